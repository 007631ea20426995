package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/flocon/flocon/node"
)

// TestVersionAndCompletion: --version prints the version; shell completion
// scripts are generated for the shells the README names.
func TestVersionAndCompletion(t *testing.T) {
	t.Parallel()
	run := func(args ...string) string {
		t.Helper()
		root := newRootCmd(testEnv(t, nil))
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.ExecuteContext(t.Context()); err != nil {
			t.Fatalf("flocon %v: %v", args, err)
		}
		return out.String()
	}
	if got := run("--version"); got != "flocon "+node.Version+"\n" {
		t.Errorf("--version = %q", got)
	}
	for shell, want := range map[string]string{"bash": "__start_flocon", "zsh": "#compdef flocon", "fish": "complete -c flocon"} {
		if got := run("completion", shell); !strings.Contains(got, want) {
			t.Errorf("completion %s lacks %q", shell, want)
		}
	}
}
