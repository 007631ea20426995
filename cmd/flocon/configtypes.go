package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Booleans and value types as people write them: the words a flag, a
// FLOCON_* variable or flocon.toml accepts, and errors that name the setting
// and the kind of value it wants instead of a Go type.

// parseBoolWord accepts what people type for yes and no.
func parseBoolWord(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "y", "yes", "on":
		return true, nil
	case "0", "f", "false", "n", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%w: %q is not a yes/no value (use yes, no, on, off, true, false, 1 or 0)", errConfig, s)
}

// boolValue is a pflag bool that parses with parseBoolWord.
type boolValue struct{ p *bool }

func (b boolValue) String() string {
	if b.p == nil {
		return "false"
	}
	return strconv.FormatBool(*b.p)
}

func (b boolValue) Set(s string) error {
	v, err := parseBoolWord(s)
	if err != nil {
		return err
	}
	*b.p = v
	return nil
}

func (boolValue) Type() string     { return "bool" }
func (boolValue) IsBoolFlag() bool { return true }

// fileBool reads a yes/no setting of flocon.toml: a TOML boolean, or a
// word in quotes ("yes", "off"); nil when absent.
func fileBool(key string, v any) (*bool, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case bool:
		return &v, nil
	case string:
		b, err := parseBoolWord(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return &b, nil
	}
	return nil, fmt.Errorf("%w: %s wants true or false, not %v", errConfig, key, v)
}

// goTypeWords names a Go field type as the value a person must write.
var goTypeWords = map[string]string{
	"string":            "a string in quotes",
	"[]string":          `a list of strings, e.g. ["a", "b"]`,
	"bool":              "true or false",
	"int":               "a whole number",
	"int64":             "a whole number",
	"[]main.repoConfig": "[[repo]] tables",
}

var tomlTypeErr = regexp.MustCompile(`cannot decode TOML (\w+) into struct field \S+ of type (\S+)`)

// userTOMLError rewords a decoding error of path: the line, the key and the
// kind of value wanted, never a Go struct field.
func userTOMLError(path string, err error) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return fmt.Errorf("config %s: %w: %w", path, errConfig, err)
	}
	line, _ := de.Position()
	key := strings.Join(de.Key(), ".")
	msg := de.Error()
	if m := tomlTypeErr.FindStringSubmatch(msg); m != nil {
		want, ok := goTypeWords[m[2]]
		if !ok {
			want = "another type"
		}
		return fmt.Errorf("config %s line %d: %w: %s wants %s, not a TOML %s", path, line, errConfig, key, want, m[1])
	}
	msg = strings.TrimPrefix(msg, "toml: ")
	if key != "" {
		return fmt.Errorf("config %s line %d: %w: %s: %s", path, line, errConfig, key, msg)
	}
	return fmt.Errorf("config %s line %d: %w: %s", path, line, errConfig, msg)
}
