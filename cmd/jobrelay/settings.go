package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
)

// usageError is a bad command line or configuration value: one line for the
// user, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// env looks variables up in the process environment first, then in the
// .env file of the working directory (if any): real variables win, as
// with docker compose.
type env struct {
	getenv func(string) (string, bool)
	file   map[string]string
}

// loadEnv reads ./.env if it exists. A .env that cannot be parsed is an
// error: silently ignoring it would run with the wrong settings.
func loadEnv(getenv func(string) (string, bool), path string) (*env, error) {
	e := &env{getenv: getenv, file: map[string]string{}}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return nil, usagef("read %s: %v", path, err)
	}
	defer f.Close()
	m, err := godotenv.Parse(bufio.NewReader(f))
	if err != nil {
		return nil, usagef("parse %s: %v", path, err)
	}
	e.file = m
	return e, nil
}

// lookup finds a variable. An empty value counts as unset (compose passes
// "${VAR:-}" as an empty string), except for the settings where empty has
// a meaning of its own (see lookupRaw).
func (e *env) lookup(name string) (string, bool) {
	if v, ok := e.getenv(name); ok && strings.TrimSpace(v) != "" {
		return v, true
	}
	if v, ok := e.file[name]; ok && strings.TrimSpace(v) != "" {
		return v, true
	}
	return "", false
}

// lookupRaw finds a variable, empty or not.
func (e *env) lookupRaw(name string) (string, bool) {
	if v, ok := e.getenv(name); ok {
		return v, true
	}
	v, ok := e.file[name]
	return v, ok
}

// settings are a command's flags, each backed by an environment variable
// and a default: flag, then environment, then .env, then default.
type settings struct {
	fs      *flag.FlagSet
	env     *env
	entries []*setting
}

type setting struct {
	env, flag, usage, def, meta string
	boolean                     bool                // a flag that needs no value
	emptyIsValue                bool                // an empty variable is a value, not "unset"
	redact                      func(string) string // hides secrets in error messages
	parse                       func(string) error  // sets the typed value
	value                       string              // the text in effect
	source                      string              // "flag", "env", "default"
}

func newSettings(name string, e *env) *settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are ours
	return &settings{fs: fs, env: e}
}

// add registers a setting. env may be empty for flag-only settings.
func (s *settings) add(st *setting) {
	st.value, st.source = st.def, "default"
	if st.env != "" {
		lookup := s.env.lookup
		if st.emptyIsValue {
			lookup = s.env.lookupRaw
		}
		if v, ok := lookup(st.env); ok {
			st.value, st.source = v, "env"
		}
	}
	s.entries = append(s.entries, st)
	set := func(v string) error {
		st.value, st.source = v, "flag"
		return nil
	}
	if st.boolean {
		s.fs.BoolFunc(st.flag, st.usage, set) // --once, or --once=false
	} else {
		s.fs.Func(st.flag, st.usage, set)
	}
}

// parse reads the command line, then turns every setting into its value.
// The first bad value is reported naming its flag or variable.
func (s *settings) parse(args []string) ([]string, error) {
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%s: %v (see --help)", s.fs.Name(), err)
	}
	for _, st := range s.entries {
		if err := st.parse(strings.TrimSpace(st.value)); err != nil {
			shown := st.value
			if st.redact != nil {
				shown = st.redact(shown)
			}
			return nil, usagef("%s: %v, got %q", st.name(), err, shown)
		}
	}
	return s.fs.Args(), nil
}

// name says where a value came from, for error messages.
func (st *setting) name() string {
	switch {
	case st.source == "flag" || st.env == "":
		return "--" + st.flag
	default:
		return st.env
	}
}

// help writes the command's flags and variables.
func (s *settings) help(w io.Writer) {
	entries := append([]*setting(nil), s.entries...)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].flag < entries[j].flag })
	fmt.Fprintln(w, "Flags (each also read from the environment variable shown, or ./.env; flags win):")
	for _, st := range entries {
		left := "  --" + st.flag
		if st.meta != "" {
			left += " " + st.meta
		}
		var extra []string
		if st.env != "" {
			extra = append(extra, "env "+st.env)
		}
		if st.def != "" {
			extra = append(extra, "default "+st.def)
		}
		line := st.usage
		if len(extra) > 0 {
			line += " (" + strings.Join(extra, ", ") + ")"
		}
		fmt.Fprintf(w, "%-30s %s\n", left, line)
	}
}

// Setting constructors: each parses and checks its text into p.

func stringSetting(p *string, env, flagName, def, meta, usage string, check func(string) error) *setting {
	return &setting{env: env, flag: flagName, def: def, meta: meta, usage: usage, parse: func(v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
		*p = v
		return nil
	}}
}

func intSetting(p *int, env, flagName string, def, lo, hi int, usage string) *setting {
	return &setting{env: env, flag: flagName, def: strconv.Itoa(def), meta: "N", usage: usage, parse: func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("must be a whole number from %d to %d", lo, hi)
		}
		*p = n
		return nil
	}}
}

func durationSetting(p *time.Duration, env, flagName string, def, lo time.Duration, usage string) *setting {
	return &setting{env: env, flag: flagName, def: def.String(), meta: "DURATION", usage: usage, parse: func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New(`must be a duration such as "500ms", "30s" or "5m"`)
		}
		if d < lo {
			return fmt.Errorf("must be at least %s", lo)
		}
		*p = d
		return nil
	}}
}

func boolSetting(p *bool, env, flagName string, def bool, usage string) *setting {
	return &setting{env: env, flag: flagName, def: strconv.FormatBool(def), boolean: true, usage: usage, parse: func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("must be true or false")
		}
		*p = b
		return nil
	}}
}
