package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeLayout: the README's Layout section names every Go package of
// the module and no directory that does not exist.
func TestReadmeLayout(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "## Layout")
	if !ok {
		t.Fatal("README.md has no Layout section")
	}
	block := regexp.MustCompile("(?s)```\n(.*?)```").FindStringSubmatch(after)
	if block == nil {
		t.Fatal("the Layout section has no code block")
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)(?:^|\s)([a-z][a-z0-9_./-]*/)`).FindAllStringSubmatch(block[1], -1) {
		dir := strings.TrimSuffix(m[1], "/")
		named[dir] = true
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			t.Errorf("the Layout names %s/, which is not a directory", dir)
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	wd, _ := os.Getwd()
	for _, dir := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(strings.TrimPrefix(dir, wd), "/")
		if rel != "" && !named[rel] {
			t.Errorf("package directory %s/ is not in the README's Layout", rel)
		}
	}
}
