package gcptest

import (
	"fmt"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
)

// filter is a conjunction of comparisons, the subset of Compute Engine's
// list filter language the server understands:
//
//	labels.KEY = "VALUE"   labels.KEY != "VALUE"
//	status = RUNNING       status != TERMINATED
//	name = "NAME"          name != "NAME"
//
// joined by spaces or AND, each optionally parenthesised; values quoted or
// not. Anything else (OR, NOT, ':', regular expressions, the legacy "eq"
// syntax, other fields) is refused with 400 so that a driver cannot rely
// on an expression the server would evaluate differently from Compute
// Engine.
type filter []comparison

type comparison struct {
	field string // "labels.KEY", "status", "name"
	neg   bool
	value string
}

func parseFilter(expr string) (filter, *apiError) {
	bad := func(why string) *apiError {
		return errInvalid(fmt.Sprintf("Invalid value for field 'filter': '%s'. Invalid list filter expression: %s.", expr, why)).field("filter")
	}
	toks, err := tokenize(expr)
	if err != nil {
		return nil, bad(err.Error())
	}
	var f filter
	for i := 0; i < len(toks); {
		if toks[i] == "AND" {
			if len(f) == 0 {
				return nil, bad("AND without a left operand")
			}
			i++
			continue
		}
		paren := toks[i] == "("
		if paren {
			i++
		}
		if i+3 > len(toks) {
			return nil, bad("incomplete comparison")
		}
		field, op, value := toks[i], toks[i+1], toks[i+2]
		i += 3
		if paren {
			if i >= len(toks) || toks[i] != ")" {
				return nil, bad("missing )")
			}
			i++
		}
		if op != "=" && op != "!=" {
			return nil, bad("operator " + op + " is not emulated")
		}
		switch {
		case field == "status" || field == "name":
		case strings.HasPrefix(field, "labels.") && len(field) > len("labels."):
		default:
			return nil, bad("field " + field + " is not emulated")
		}
		if isSyntax(value) || isSyntax(field) {
			return nil, bad("unexpected " + value)
		}
		f = append(f, comparison{field: field, neg: op == "!=", value: unquote(value)})
	}
	return f, nil
}

func isSyntax(tok string) bool {
	switch tok {
	case "(", ")", "=", "!=", "AND", "OR", "NOT", ":", "<", ">", "<=", ">=", "eq", "ne":
		return true
	}
	return false
}

// tokenize splits a filter into words, quoted strings (kept with their
// quotes), parentheses and operators.
func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(' || c == ')':
			toks = append(toks, string(c))
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, s[i:j+1])
			i = j + 1
		case c == '!' && i+1 < len(s) && s[i+1] == '=':
			toks = append(toks, "!=")
			i += 2
		case c == '=' || c == ':' || c == '<' || c == '>':
			j := i + 1
			if j < len(s) && s[j] == '=' {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n()\"=!:<>", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		return strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(v)
	}
	return v
}

func (f filter) match(inst *computepb.Instance) bool {
	for _, c := range f {
		var got string
		var present bool
		switch {
		case c.field == "status":
			got, present = inst.GetStatus(), true
		case c.field == "name":
			got, present = inst.GetName(), true
		default:
			got, present = inst.GetLabels()[strings.TrimPrefix(c.field, "labels.")]
		}
		eq := present && got == c.value
		if eq == c.neg {
			return false
		}
	}
	return true
}
