package console

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"
)

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"signin", "error", "clusters", "cluster", "clouds", "computeconfigs", "computeconfig", "tokens", "audit", "secret"}

var funcs = template.FuncMap{
	"age":      age,
	"ago":      ago,
	"money":    func(f float64) string { return fmt.Sprintf("$%.2f", f) },
	"join":     strings.Join,
	"lower":    strings.ToLower,
	"stamp":    stamp,
	"stampPtr": func(t *time.Time) string { return stampPtr(t) },
	"intPtr": func(p *int) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprint(*p)
	},
	"floatPtr": func(p *float64) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprintf("$%.2f", *p)
	},
	"resources": resourcesText,
	"usage":     usageText,
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// view is what every page template gets.
type view struct {
	c      *Console
	S      *session
	Title  string
	Active string
	Data   any
}

// Can reports whether the signed-in token may call an API action, to show
// or hide the button for it.
func (v view) Can(action string) bool { return v.S != nil && v.c.can(v.S, action) }

// render writes a page; the template is executed into a buffer first, so a
// template error is a clean 500 and never half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data any) {
	t := c.pages[name]
	title := name
	if tv, ok := data.(interface{ PageTitle() string }); ok {
		title = tv.PageTitle()
	}
	if ev, ok := data.(errorView); ok {
		title = ev.Title
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, view{c: c, S: s, Title: title, Active: name, Data: data}); err != nil {
		c.log.Error("render console page", "page", name, logErr, err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// age is a short duration for a table: 45s, 12m, 3h, 4d.
func age(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return shortDuration(time.Since(t))
}

func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return shortDuration(time.Since(*t)) + " ago"
}

func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func stampPtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return stamp(*t)
}

// resourcesText prints resources in a stable order: CPU: 2, memory: 4 GiB.
func resourcesText(m map[string]float64) string {
	if len(m) == 0 {
		return "—"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := m[k]
		switch {
		case k == "memory" && v >= 1<<30:
			parts[i] = fmt.Sprintf("%s %.1f GiB", k, v/(1<<30))
		case k == "memory" && v >= 1<<20:
			parts[i] = fmt.Sprintf("%s %.0f MiB", k, v/(1<<20))
		case v == math.Trunc(v):
			parts[i] = fmt.Sprintf("%s %.0f", k, v)
		default:
			parts[i] = fmt.Sprintf("%s %.2f", k, v)
		}
	}
	return strings.Join(parts, ", ")
}
