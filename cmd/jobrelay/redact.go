package main

import (
	"net/url"
	"regexp"
	"strings"
)

// redactedURL is what a connection string that cannot be parsed is shown
// as: it might hold a password anywhere.
const redactedURL = "(unparsable URL, hidden)"

// redactURL returns a connection string fit for logs and messages. In a URL
// (postgres://, redis://, rediss://, …) the userinfo password and the values
// of secret query parameters (password, sslpassword, and any name with
// "password", "passwd", "secret" or "token" in it) become "xxxxx"; in a
// key=value DSN ("host=db password=x") the values of the same keys do. A
// string that is neither is hidden whole.
func redactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		if strings.Contains(raw, "=") {
			return dsnSecret.ReplaceAllString(raw, "${1}xxxxx")
		}
		return redactedURL
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return redactedURL
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, p := range params {
			key, _, _ := strings.Cut(p, "=")
			if name, err := url.QueryUnescape(key); err != nil || secretParam(name) {
				params[i] = key + "=xxxxx"
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	return u.Redacted()
}

// secretParam reports whether a query parameter or DSN key holds a secret.
func secretParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"password", "passwd", "secret", "token"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// dsnSecret matches a secret key of a key=value DSN and its value, quoted
// (libpq's 'single quotes', with \' and \\ escapes) or not.
var dsnSecret = regexp.MustCompile(`(?i)((?:^|\s)[a-z_]*(?:password|passwd|secret|token)[a-z_]*\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s']\S*|'.*)`)
