package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfig feeds an arbitrary config file and FLOCON_* value to the
// settings `flocon serve` resolves (file < env < flags): each gives options
// or an error, never a panic; a refusal of the user's input is a config
// error (errConfig) naming it, and accepted options validate and give the
// gateway's repos and the upstream mirrors.
func FuzzConfig(f *testing.F) {
	example, err := os.ReadFile("flocon.example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(example), "", "")
	f.Add("listen = \"127.0.0.1:1\"\n[[repos]]\nname = \"core\"\n", "FLOCON_KEEP_VERSIONS", "3")
	f.Add("p2p = \"no\"\nmdns = 1\n", "FLOCON_MIRROR", "http://a/$repo/os/$arch, http://b/$repo")
	f.Add("bootstrap = [1]\n", "FLOCON_HAVE_TIMEOUT", "-1s")
	f.Add("max_size = 9223372036854775807\n", "FLOCON_PEER_RATE", "x")
	dir := f.TempDir()
	path := filepath.Join(dir, "flocon.toml")
	f.Fuzz(func(t *testing.T, file, envName, envValue string) {
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"FLOCON_CONFIG": path, "FLOCON_DATA_DIR": dir, envName: envValue}
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		cmd, o := newServeCmdWith(filepath.Join(dir, "absent.toml"), lookup)
		cmd.SetOut(io.Discard)
		if err := cmd.Flags().Parse(nil); err != nil {
			t.Fatal(err)
		}
		if err := o.resolve(cmd.Flags(), lookup); err != nil {
			if !errors.Is(err, errConfig) {
				t.Fatalf("refused with a non-config error: %v", err)
			}
			return
		}
		if _, err := o.gatewayRepos(); err != nil {
			t.Fatalf("validated options but repos: %v", err)
		}
		_, _ = o.upstream() // may refuse a mirror template; must not panic
	})
}
