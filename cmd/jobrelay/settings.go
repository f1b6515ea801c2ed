package main

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/relay"
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
// a meaning of its own (raw).
func (e *env) lookup(name string, raw bool) (string, bool) {
	if v, ok := e.getenv(name); ok && (raw || strings.TrimSpace(v) != "") {
		return v, true
	}
	if v, ok := e.file[name]; ok && (raw || strings.TrimSpace(v) != "") {
		return v, true
	}
	return "", false
}

// binding ties an environment variable and a flag to a field: of
// relay.Config or consumer.Config, whose validate owns the field's bounds,
// or of the CLI's own settings (URLs, logging, the metrics listener).
// The value is parsed by the field's type. For a Config field, 0 means
// what -1 means in the Config (disabled, or none), and the default is the
// Config's constant.
type binding struct {
	env     string // environment variable; empty for flag-only settings
	flag    string // flag name, without dashes; empty for variable-only settings
	field   string // the Config field, whose *ConfigError is reported under env; empty for CLI settings
	ptr     any    // *string, *int, *int64, *bool, *time.Duration or *slog.Level
	def     any    // the default, shown in --help and the docs; nil when it has none of its own
	defText string // the default in words, when def is nil
	meta    string // the value's placeholder in --help
	help    string // one line of Markdown: README's settings table is made of it

	check        func(string) error  // more checks of a CLI setting's text
	secret       func(string) string // hides secrets of a value in error messages
	emptyIsValue bool                // an empty variable is a value ("" disables), not "unset"
	minutesOf    string              // the value is in minutes, read only when this variable is unset
	days         bool                // a duration may count days ("30d", "1d12h")

	value  string // the text in effect
	source string // "flag", "env" or "default"
}

// settings are a command's bindings: flag, then environment, then .env,
// then default.
type settings struct {
	fs       *flag.FlagSet
	env      *env
	bindings []*binding
}

func newSettings(name string, e *env) *settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are ours
	return &settings{fs: fs, env: e}
}

// bind registers bindings.
func (s *settings) bind(bs ...*binding) {
	for _, b := range bs {
		b.source = "default"
		b.value = b.defaultText()
		if b.env != "" {
			if v, ok := s.env.lookup(b.env, b.emptyIsValue); ok {
				b.value, b.source = v, "env"
			}
		}
		s.bindings = append(s.bindings, b)
		if b.flag == "" {
			continue
		}
		set := func(v string) error {
			b.value, b.source = v, "flag"
			return nil
		}
		if _, ok := b.ptr.(*bool); ok {
			s.fs.BoolFunc(b.flag, b.help, set) // --once, or --once=false
		} else {
			s.fs.Func(b.flag, b.help, set)
		}
	}
}

// defaultText is the default as a value would be written.
func (b *binding) defaultText() string {
	switch d := b.def.(type) {
	case nil:
		return ""
	case time.Duration:
		return shortDuration(d)
	default:
		return fmt.Sprint(d)
	}
}

// shortDuration writes 5m rather than 5m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// parse reads the command line, flags and arguments in any order ("migrate
// up --database-url URL"), then turns every binding into its value. The
// first bad value is reported naming its flag or variable. It returns the
// arguments.
func (s *settings) parse(args []string) ([]string, error) {
	var positional []string
	for {
		if err := s.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v (see --help)", s.fs.Name(), err)
		}
		rest := s.fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	for _, b := range s.bindings {
		if b.minutesOf != "" && b.source != "default" && s.set(b.minutesOf) {
			b.source = "default" // the variable it stands in for is set
		}
	}
	for _, b := range s.bindings {
		if err := b.parse(); err != nil {
			return nil, usagef("%s: %v, got %q", b.name(), err, b.shown())
		}
	}
	return positional, nil
}

// set reports whether the binding of a variable was given a value.
func (s *settings) set(env string) bool {
	for _, b := range s.bindings {
		if b.env == env && b.source != "default" {
			return true
		}
	}
	return false
}

// parse sets the field from the binding's text.
func (b *binding) parse() error {
	if b.source == "default" && (b.def == nil || b.minutesOf != "") {
		return nil // the Config's default (withDefaults), or nothing
	}
	v := strings.TrimSpace(b.value)
	if b.check != nil {
		if err := b.check(v); err != nil {
			return err
		}
	}
	// For a Config field, 0 means what -1 means in the Config.
	none := func(isZero bool) bool { return isZero && b.field != "" }
	switch p := b.ptr.(type) {
	case *string:
		if v == "" && !b.emptyIsValue && b.def != nil && b.def != "" {
			return errors.New("must not be empty")
		}
		*p = v
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("must be a whole number")
		}
		if none(n == 0) {
			n = -1
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return errors.New("must be a whole number")
		}
		if none(n == 0) {
			n = -1
		}
		*p = n
	case *bool:
		t, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("must be true or false")
		}
		*p = t
	case *time.Duration:
		d, err := b.duration(v)
		if err != nil {
			return err
		}
		if none(d == 0) {
			d = -1
		}
		*p = d
	case *map[string]int:
		m, err := parseWeights(v)
		if err != nil {
			return err
		}
		*p = m
	case *slog.Level:
		if p.UnmarshalText([]byte(v)) != nil {
			return errors.New("must be debug, info, warn or error")
		}
	default:
		panic(fmt.Sprintf("binding %s: unsupported field type %T", b.name(), b.ptr))
	}
	return nil
}

// parseWeights reads "name=weight,name=weight"; empty is none.
func parseWeights(v string) (map[string]int, error) {
	if v == "" {
		return nil, nil //nolint:nilnil // no weights is not an error
	}
	m := map[string]int{}
	for item := range strings.SplitSeq(v, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(item), "=")
		name = strings.TrimSpace(name)
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if !ok || name == "" || err != nil {
			return nil, errors.New(`must be tenant=weight pairs separated by commas, such as "acme=3,globex=2"`)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("names tenant %q twice", name)
		}
		m[name] = n
	}
	return m, nil
}

// duration reads a Go duration, or a number of minutes for minutesOf.
func (b *binding) duration(v string) (time.Duration, error) {
	if b.days {
		return parseDays(v)
	}
	if b.minutesOf == "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, errors.New(`must be a duration such as "500ms", "30s" or "5m"`)
		}
		return d, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > float64(math.MaxInt64)/float64(time.Minute) {
		return 0, errors.New("must be a number of minutes")
	}
	return time.Duration(f * float64(time.Minute)), nil
}

// parseDays reads a Go duration that may start with a number of days,
// which time.ParseDuration does not know: "30d", "1d12h", "36h", "90m".
func parseDays(v string) (time.Duration, error) {
	bad := errors.New(`must be a duration such as "30d", "1d12h" or "36h"`)
	var days int64
	if i := strings.IndexByte(v, 'd'); i >= 0 {
		n, err := strconv.ParseInt(v[:i], 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/int64(24*time.Hour)-1 {
			return 0, bad
		}
		days, v = n, v[i+1:]
		if v == "" {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 && days > 0 {
		return 0, bad
	}
	return time.Duration(days)*24*time.Hour + d, nil
}

// name says where a value came from, for error messages.
func (b *binding) name() string {
	if b.source == "flag" || b.env == "" {
		return "--" + b.flag
	}
	return b.env
}

// shown is the value as an error message may show it.
func (b *binding) shown() string {
	if b.secret != nil {
		return b.secret(b.value)
	}
	return b.value
}

// configError reports a *relay.ConfigError or *consumer.ConfigError under
// the variable or flag bound to its field, as a usage error; other errors
// are returned as they are.
func (s *settings) configError(err error) error {
	var field string
	var rerr *relay.ConfigError
	var cerr *consumer.ConfigError
	switch {
	case errors.As(err, &rerr):
		field = rerr.Field
	case errors.As(err, &cerr):
		field = cerr.Field
	default:
		return err
	}
	var bound *binding
	for _, b := range s.bindings {
		if b.field != field {
			continue
		}
		if bound == nil || bound.source == "default" && b.source != "default" {
			bound = b
		}
	}
	if bound == nil {
		return usagef("%v", err)
	}
	if bound.source == "default" {
		return usagef("%s: %v", bound.name(), err)
	}
	return usagef("%s: %v, got %q", bound.name(), err, bound.shown())
}

// help writes the command's flags and variables.
func (s *settings) help(w io.Writer) {
	bs := append([]*binding(nil), s.bindings...)
	key := func(b *binding) string { // a variable without a flag sorts by its name
		return cmp.Or(b.flag, strings.ReplaceAll(strings.ToLower(b.env), "_", "-"))
	}
	sort.SliceStable(bs, func(i, j int) bool { return key(bs[i]) < key(bs[j]) })
	fmt.Fprintln(w, "Flags (each also read from the environment variable shown, or ./.env; flags win):")
	for _, b := range bs {
		left := "  --" + b.flag
		if b.flag == "" {
			left = "  (no flag)"
		}
		if b.meta != "" {
			left += " " + b.meta
		}
		var extra []string
		if b.env != "" {
			extra = append(extra, "env "+b.env)
		}
		if d := cmp.Or(b.defaultText(), b.defText); d != "" && b.minutesOf == "" {
			extra = append(extra, "default "+d)
		}
		line := b.help
		if len(extra) > 0 {
			line += " (" + strings.Join(extra, ", ") + ")"
		}
		fmt.Fprintf(w, "%-30s %s\n", left, strings.ReplaceAll(line, "`", "")) // help is README's Markdown
	}
}
