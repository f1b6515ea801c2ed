package main

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/db"
	"github.com/jobrelay/jobrelay/internal/testenv"
)

// Item 11: the passwords of DATABASE_URL and REDIS_URL, in any of their
// places, appear in no log line, status output or error.
func TestSecretsStaySecret(t *testing.T) {
	t.Parallel()
	pl := newPipeline(t)
	pg, err := url.Parse(pl.schema.URL)
	require.NoError(t, err)
	closed := closedPort(t)
	redisHost := strings.TrimPrefix(strings.TrimSuffix(testenv.RedisURL(), "/0"), "redis://")

	// Trust authentication ignores PostgreSQL passwords; sslmode=disable
	// ignores sslpassword. Redis errors on AUTH without a configured
	// password, which exercises the error path as well.
	withQuery := func(u url.URL, host string, extra string) string {
		u.Host = host
		u.RawQuery += "&" + extra
		return u.String()
	}
	userinfo := *pg
	userinfo.User = url.UserPassword("postgres", "Secret-Userinfo1")
	dsn := func(host, port string) string {
		return "host=" + host + " port=" + port + " user=postgres dbname=" + strings.TrimPrefix(pg.Path, "/") +
			" sslmode=disable search_path=" + pl.schema.Name + " password='Secret Quoted2' sslpassword=Secret-DSN3"
	}
	pgHost, pgPort, _ := net.SplitHostPort(pg.Host)
	for _, tc := range []struct {
		name     string
		database string
		redis    string
		secrets  []string
	}{
		{"query password and sslpassword", withQuery(*pg, pg.Host, "password=Secret-Query4&sslpassword=Secret-SSL5"),
			testenv.RedisURL(), []string{"Secret-Query4", "Secret-SSL5"}},
		{"userinfo and sslpassword", withQuery(userinfo, pg.Host, "sslpassword=Secret-SSL6"),
			testenv.RedisURL(), []string{"Secret-Userinfo1", "Secret-SSL6"}},
		{"key=value DSN", dsn(pgHost, pgPort), testenv.RedisURL(), []string{"Secret Quoted2", "Secret-DSN3", "Secret"}},
		{"redis password", pl.schema.URL, "redis://:Secret-Redis7@" + redisHost + "/0", []string{"Secret-Redis7"}},
		{"redis user and password", pl.schema.URL, "redis://default:Secret-Redis8@" + redisHost + "/0", []string{"Secret-Redis8"}},
		{"postgres down", withQuery(userinfo, "127.0.0.1:"+closed, "password=Secret-Query9&sslpassword=Secret-SSL10"),
			testenv.RedisURL(), []string{"Secret-Userinfo1", "Secret-Query9", "Secret-SSL10"}},
		{"postgres DSN down", dsn("127.0.0.1", closed), testenv.RedisURL(), []string{"Secret Quoted2", "Secret-DSN3", "Secret"}},
		{"redis down", pl.schema.URL, "redis://user:Secret-Redis11@127.0.0.1:" + closed + "/0", []string{"Secret-Redis11"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, format := range []string{"text", "json"} {
				env := map[string]string{"DATABASE_URL": tc.database, "REDIS_URL": tc.redis, "JOB_REVIEW_QUEUE_NAME": pl.stream,
					"METRICS_ADDR": "", "LOG_FORMAT": format}
				var all strings.Builder
				for _, args := range [][]string{{"relay", "--once"}, {"status"}, {"status", "--json"}, {"status", "--check"}, {"retry", "--failed"}} {
					code, stdout, stderr := runInProcess(t, env, args...)
					all.WriteString(stdout + stderr)
					if args[0] == "relay" {
						require.Contains(t, stderr, "jobrelay relay: starting", "the start-up line is there to check")
					}
					if args[0] == "status" && strings.Contains(tc.name, "down") {
						require.NotZero(t, code, "%v: %s", args, stderr)
						require.Contains(t, stdout+stderr, "connection refused", "the error line is there to check")
					}
				}
				for _, s := range tc.secrets {
					require.NotContains(t, all.String(), s, "%s leaked (%s):\n%s", s, format, all.String())
				}
			}
		})
	}

	// Bad values are refused naming the variable, not showing the secrets.
	for _, bad := range []string{
		"mysql://u@db/x?sslpassword=Secret-Bad1",
		"postgres://u@db:port/x?sslpassword=Secret-Bad1",
		"host=db port=none password=Secret-Bad1",
	} {
		code, _, stderr := runInProcess(t, map[string]string{"DATABASE_URL": bad}, "status")
		require.Equal(t, 2, code, stderr)
		require.Contains(t, stderr, "DATABASE_URL: is not a valid PostgreSQL URL")
		require.NotContains(t, stderr, "Secret-Bad1")
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:pw@h:5432/db?sslmode=disable":                         "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db?password=pw&sslpassword=spw&search_path=s":       "postgres://u@h/db?password=xxxxx&sslpassword=xxxxx&search_path=s",
		"postgres://u@h/db?PassWord=pw":                                     "postgres://u@h/db?PassWord=xxxxx",
		"postgres://u@h1:5432,h2:5433/db?sslpassword=a%20b":                 "postgres://u@h1:5432,h2:5433/db?sslpassword=xxxxx",
		"redis://:pw@cache:6379/0":                                          "redis://:xxxxx@cache:6379/0",
		"rediss://default:pw@cache:6380/1?client_name=x":                    "rediss://default:xxxxx@cache:6380/1?client_name=x",
		"host=h user=u password=pw sslpassword='a b' dbname=db":             "host=h user=u password=xxxxx sslpassword=xxxxx dbname=db",
		"host=h password = 'it\\'s' dbname=db":                              "host=h password = xxxxx dbname=db",
		"postgres://u:pw@h:port/db":                                         "(unparsable URL, hidden)",
		"just a string":                                                     "(unparsable URL, hidden)",
		"postgres://u@h/db?options=-c%20search_path%3Dx&application_name=a": "postgres://u@h/db?options=-c%20search_path%3Dx&application_name=a",
	} {
		require.Equal(t, want, db.RedactURL(in), in)
	}
}
