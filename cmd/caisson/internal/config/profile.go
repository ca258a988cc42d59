package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"
)

// ApplyProfile reads a TOML profile and sets every flag it names that the command line did not set: keys are
// the long names of `caisson run` flags (`hostname = "ci"`, `ro-bind = ["/data:/data"]`, `overlay = true`), plus
// `command`, used when the command line gives none. Unknown keys and wrong types are errors naming the file,
// line and key. It returns the command to run.
func ApplyProfile(fs *pflag.FlagSet, path string, command []string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--profile: %v", errors.Unwrap(err))
	}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, _ := de.Position()
			return nil, usagef("--profile: %s:%d: %s", path, row, de.Error())
		}
		return nil, usagef("--profile: %s: %v", path, err)
	}
	lines := keyLines(data)
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return lines[keys[i]] < lines[keys[j]] })
	for _, key := range keys {
		val := doc[key]
		where := fmt.Sprintf("%s:%d", path, lines[key])
		if key == "command" {
			args, ok := stringList(val)
			if !ok || len(args) == 0 || args[0] == "" {
				return nil, usagef("--profile: %s: key \"command\" wants a non-empty array of strings", where)
			}
			if len(command) == 0 {
				command = args
			}
			continue
		}
		fl := fs.Lookup(key)
		if fl == nil || key == "profile" || key == "help" {
			return nil, usagef("--profile: %s: unknown key %q (keys are the long names of 'caisson run' flags, and command)", where, key)
		}
		if fl.Changed {
			continue // the command line wins
		}
		var values []string
		switch fl.Value.Type() {
		case "bool":
			b, ok := val.(bool)
			if !ok {
				return nil, usagef("--profile: %s: key %q wants true or false, got %s", where, key, typeName(val))
			}
			values = []string{fmt.Sprint(b)}
		case "stringArray":
			list, ok := stringList(val)
			if !ok {
				return nil, usagef("--profile: %s: key %q wants a string or an array of strings, got %s", where, key, typeName(val))
			}
			values = list
		default:
			s, ok := val.(string)
			if !ok {
				return nil, usagef("--profile: %s: key %q wants a string, got %s", where, key, typeName(val))
			}
			values = []string{s}
		}
		for _, v := range values {
			if err := fs.Set(key, v); err != nil {
				return nil, usagef("--profile: %s: key %q: %v", where, key, err)
			}
		}
	}
	return command, nil
}

// keyLines finds the line of each top-level key (the TOML decoder does not report key positions).
func keyLines(data []byte) map[string]int {
	out := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		if key, ok := lineKey(sc.Text()); ok {
			if _, seen := out[key]; !seen {
				out[key] = n
			}
		}
	}
	return out
}

// lineKey returns the key a line assigns: optional blanks, the key (letters, digits, '_' and '-', possibly in
// double quotes), optional blanks, '='. It is the regular expression ^\s*("?)([A-Za-z0-9_-]+)("?)\s*= written out:
// the regexp package (and the Unicode tables it initialises at every start) stays out of the binary.
func lineKey(line string) (string, bool) {
	blank := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }
	keyChar := func(c byte) bool {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	i := 0
	for i < len(line) && blank(line[i]) {
		i++
	}
	if i < len(line) && line[i] == '"' {
		i++
	}
	start := i
	for i < len(line) && keyChar(line[i]) {
		i++
	}
	key := line[start:i]
	if key == "" {
		return "", false
	}
	if i < len(line) && line[i] == '"' {
		i++
	}
	for i < len(line) && blank(line[i]) {
		i++
	}
	if i == len(line) || line[i] != '=' {
		return "", false
	}
	return key, true
}

func stringList(v any) ([]string, bool) {
	switch x := v.(type) {
	case string:
		return []string{x}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*")
}
