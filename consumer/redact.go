package consumer

import (
	"cmp"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// What a handler spec may hold that must never reach a log, last_error, a
// dead letter or a metric: tokens in an exec command (VAR=value
// assignments, "--token value", "-H 'Authorization: Bearer value'") and in
// an http URL (the userinfo, query values, and the path past its first
// segment: webhook URLs such as Slack's /services/T…/B…/<secret> carry
// their token there). Handlers therefore show
// themselves, and build their errors, only from a redacted form of their
// spec (RedactSpec), and mask the secrets they can find in what the
// command or the service writes back (stderr, stdout, a response body),
// since programs echo their arguments.

// secretMask stands in for a secret.
const secretMask = "xxxxx"

// minScrubLen is the shortest secret masked in free text (stderr, response
// bodies): shorter values, such as "1" or "true" in a query, would mask
// every occurrence of a common word while hiding nothing secret. Redacted
// specs mask every value, whatever its length.
const minScrubLen = 6

// RedactSpec returns a handler spec (as ParseHandler takes it) in a form
// that may be logged: for "http:URL", the URL with every query value, the
// userinfo's password (or its user name, when alone: a token), the path
// past its first segment and the fragment masked; for "exec:CMD", the values of leading VAR=value
// assignments masked, the program name, and only the number of the other
// arguments, any of which may be a secret. An unknown spec shows its
// first word only.
func RedactSpec(spec string) string {
	switch {
	case spec == "" || spec == "log":
		return "log"
	case strings.HasPrefix(spec, "exec:"):
		return "exec:" + redactCommand(strings.TrimSpace(strings.TrimPrefix(spec, "exec:")))
	case strings.HasPrefix(spec, "http:") || strings.HasPrefix(spec, "https://"):
		return "http:" + redactURL(httpTarget(spec))
	}
	name, _, cut := strings.Cut(strings.TrimSpace(spec), ":")
	if f := strings.Fields(name); len(f) > 0 && f[0] != name {
		name, cut = f[0], true
	}
	if cut {
		return name + ":…"
	}
	return name
}

// redactURL masks the secrets of a URL (see RedactSpec). It parses
// relative URLs too, such as a Location header; an unparsable one is
// hidden whole.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL, hidden)"
	}
	if rest := pathSecret(u.Path); rest != "" {
		u.Path, u.RawPath = strings.TrimSuffix(u.Path, rest)+secretMask, ""
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), secretMask)
		} else {
			u.User = url.User(secretMask)
		}
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			if k, _, ok := strings.Cut(p, "="); ok {
				parts[i] = k + "=" + secretMask
			} else {
				parts[i] = secretMask // a bare token
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if u.Fragment != "" || u.RawFragment != "" {
		u.Fragment, u.RawFragment = secretMask, ""
	}
	if u.Opaque != "" {
		u.Opaque = redactOpaque(u.Opaque)
	}
	return u.String()
}

// redactOpaque masks what follows the first colon of an opaque URL's body
// ("host:secret" parses as scheme "host").
func redactOpaque(s string) string {
	if i := strings.IndexAny(s, ":@"); i >= 0 {
		return s[:i+1] + secretMask
	}
	return s
}

// urlSecrets returns the parts of a URL that redactURL masks, as they may
// appear in text: escaped and unescaped.
func urlSecrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p, url.QueryEscape(p))
		} else {
			out = append(out, u.User.Username())
		}
	}
	if rest := pathSecret(u.Path); rest != "" {
		out = append(out, rest)
		out = append(out, strings.Split(rest, "/")...)
	}
	for p := range strings.SplitSeq(u.RawQuery, "&") {
		_, v, ok := strings.Cut(p, "=")
		if !ok {
			v = p
		}
		out = append(out, v)
		if unescaped, err := url.QueryUnescape(v); err == nil {
			out = append(out, unescaped)
		}
	}
	return append(out, u.Fragment)
}

// pathSecret is the part of a URL path that redactURL masks: all past its
// first segment ("/services/T0/B0/token" keeps "/services/").
func pathSecret(path string) string {
	_, rest, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || rest == "" {
		return ""
	}
	return rest
}

// envAssignment matches a shell variable assignment, "NAME=value".
var envAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// secretName matches flag, variable and header names that suggest a secret.
var secretName = regexp.MustCompile(`(?i)token|secret|pass|pwd|key|auth|cred|bearer|cookie|session|sig`)

// headerLike matches "Name: value", as given to curl -H.
var headerLike = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*:\s*(.+)$`)

// redactCommand shows a command as RedactSpec does: leading assignments
// with their values masked, the program, and how many arguments follow.
func redactCommand(command string) string {
	words := shellWords(command)
	var shown []string
	i := 0
	for ; i < len(words) && envAssignment.MatchString(words[i]); i++ {
		name, _, _ := strings.Cut(words[i], "=")
		shown = append(shown, name+"="+secretMask)
	}
	if i < len(words) {
		shown = append(shown, words[i])
		i++
	}
	if rest := len(words) - i; rest > 0 {
		shown = append(shown, "(+"+strconv.Itoa(rest)+" args hidden)")
	}
	return strings.Join(shown, " ")
}

// commandSecrets returns what looks secret in a command line: values of
// VAR=value assignments anywhere; values of flags whose name suggests a
// secret, as "--token=v" or "--token v" (and "-u user:pass"); values of
// secret headers ("Authorization: Bearer v"), whole and their last word;
// and the secrets of URLs among the arguments.
func commandSecrets(command string) []string {
	words := shellWords(command)
	var out []string
	for i, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok {
			if envAssignment.MatchString(w) || strings.HasPrefix(k, "-") && secretName.MatchString(k) {
				out = append(out, v)
			}
		} else if strings.HasPrefix(w, "-") && i+1 < len(words) {
			name := strings.TrimLeft(w, "-")
			if secretName.MatchString(name) || name == "u" || name == "user" {
				v := words[i+1]
				out = append(out, v)
				if _, pass, ok := strings.Cut(v, ":"); ok {
					out = append(out, pass)
				}
			}
		}
		if m := headerLike.FindStringSubmatch(w); m != nil && secretName.MatchString(m[1]) {
			v := strings.TrimSpace(m[2])
			out = append(out, v)
			if f := strings.Fields(v); len(f) > 1 {
				out = append(out, f[len(f)-1])
			}
		}
		if before, _, ok := strings.Cut(w, "://"); ok {
			start := strings.LastIndexAny(before, " =\"'") + 1
			out = append(out, urlSecrets(w[start:])...)
		}
	}
	return out
}

// shellWords splits a command line into words roughly as sh does: blanks
// separate words, quotes group them, a backslash escapes the next
// character, and ; | & < > ( ) end a word. It is for redaction only, not
// for running anything: the command itself runs through sh.
func shellWords(s string) []string {
	var (
		words []string
		cur   strings.Builder
		in    bool // a word has started
		quote rune
		esc   bool
	)
	flush := func() {
		if in {
			words = append(words, cur.String())
		}
		cur.Reset()
		in = false
	}
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				esc = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			esc, in = true, true
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t' || r == '\n':
			flush()
		case strings.ContainsRune(";|&<>()", r):
			flush()
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	flush()
	return words
}

// scrubber masks known secrets in free text.
type scrubber struct {
	r *strings.Replacer // nil: nothing to mask
}

// newScrubber masks the given secrets, longest first, ignoring those too
// short to be secrets (minScrubLen).
func newScrubber(secrets []string) scrubber {
	var keep []string
	for _, s := range secrets {
		if len(s) >= minScrubLen {
			keep = append(keep, s)
		}
	}
	slices.SortFunc(keep, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b)) })
	keep = slices.Compact(keep)
	if len(keep) == 0 {
		return scrubber{}
	}
	pairs := make([]string, 0, 2*len(keep))
	for _, s := range keep {
		pairs = append(pairs, s, secretMask)
	}
	return scrubber{r: strings.NewReplacer(pairs...)}
}

// scrub returns s with the secrets masked.
func (s scrubber) scrub(text string) string {
	if s.r == nil {
		return text
	}
	return s.r.Replace(text)
}
