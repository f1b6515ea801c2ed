package consumer

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/internal/testenv"
)

func TestLogHandlerTruncatesHugeFields(t *testing.T) {
	t.Parallel()
	logger, logs := testenv.NewLogs(t)
	job := sampleJob
	job.Title = new(strings.Repeat("é", 512*1024)) // 1 MiB, two bytes a rune
	job.Company = new(strings.Repeat("x", 5000))
	job.URL = new("https://example.com/" + strings.Repeat("p", 2000))
	require.NoError(t, LogHandler(logger).Handle(testenv.Context(t), job))

	recs := logs.Matching("Processing job review")
	require.Len(t, recs, 1)
	attrs := recs[0].Attrs
	for _, k := range []string{"title", "company", "job_url"} {
		require.LessOrEqual(t, len(attrs[k]), 1100, "%s is bounded", k)
	}
	require.True(t, strings.HasSuffix(attrs["title"], "…(1048576 bytes)"), "title marker: %q", attrs["title"][len(attrs["title"])-40:])
	require.True(t, strings.HasSuffix(attrs["company"], "…(5000 bytes)"))
	require.True(t, strings.HasPrefix(attrs["title"], "éé"))
	require.True(t, utf8.ValidString(attrs["title"]), "cut on a rune boundary")
	require.Equal(t, job.ID, attrs["job_id"], "short fields are kept whole")
	require.Equal(t, *job.Site, attrs["site"])
}
