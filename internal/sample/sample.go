// Package sample makes realistic job postings for demos, tests and
// benchmarks: varied titles, companies, sites and locations, with a
// description of a few hundred bytes.
package sample

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/jobrelay/jobrelay/db"
)

var (
	levels = []string{"", "Junior ", "Senior ", "Staff ", "Principal ", "Lead "}
	roles  = []string{"Backend Engineer", "Frontend Engineer", "Full-Stack Developer", "Data Engineer", "Data Scientist", "Machine Learning Engineer", "Site Reliability Engineer", "DevOps Engineer", "Platform Engineer", "Security Engineer", "Mobile Developer (iOS)", "Android Developer", "QA Automation Engineer", "Product Manager", "Engineering Manager", "Solutions Architect", "Database Administrator", "Go Developer", "Python Developer", "Rust Engineer"}
	tags   = []string{"", "", "", " (Remote)", " - Payments", " - Search", " - Infrastructure", " - Growth", " (Contract)", " - AI Platform"}
	prefix = []string{"Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Pied Piper", "Vandelay", "Soylent", "Tyrell", "Cyberdyne", "Aperture", "Massive Dynamic", "Wonka", "Oscorp", "Nakatomi", "Gringotts", "Monarch", "Blue Sun"}
	suffix = []string{" Labs", " Systems", " Inc.", " GmbH", " Technologies", " Analytics", " Cloud", " Health", " Robotics", " Financial"}
	sites  = []string{"linkedin", "indeed", "glassdoor", "stepstone", "welcometothejungle", "otta", "wellfound", "remoteok", "weworkremotely", "company-site"}
	places = []string{"Berlin, Germany", "London, UK", "Paris, France", "Amsterdam, Netherlands", "Remote (EU)", "New York, NY", "San Francisco, CA", "Austin, TX", "Toronto, Canada", "Lisbon, Portugal", "Remote (Worldwide)", "Munich, Germany", "Zurich, Switzerland", "Warsaw, Poland", "Stockholm, Sweden"}
	stacks = []string{"Go", "PostgreSQL", "Redis", "Kubernetes", "Python", "TypeScript", "React", "AWS", "GCP", "Terraform", "Kafka", "gRPC", "Rust", "Spark", "dbt"}
	perks  = []string{"equity", "a learning budget", "four-day weeks in summer", "relocation support", "a home-office budget", "30 days of holiday", "on-call pay", "parental leave"}
)

// Jobs returns n sample jobs drawn from rng.
func Jobs(rng *rand.Rand, n int) []db.NewJob {
	out := make([]db.NewJob, n)
	for i := range out {
		out[i] = Job(rng)
	}
	return out
}

// Job returns one sample job drawn from rng.
func Job(rng *rand.Rand) db.NewJob {
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	title := pick(levels) + pick(roles) + pick(tags)
	company := pick(prefix) + pick(suffix)
	site := pick(sites)
	slug := strings.ToLower(strings.NewReplacer(" ", "-", ".", "", "(", "", ")", "").Replace(company))
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s is hiring a %s in %s. ", company, title, pick(places))
	fmt.Fprintf(&sb, "You will build and run services with %s, %s and %s, ", pick(stacks), pick(stacks), pick(stacks))
	fmt.Fprintf(&sb, "work with a team of %d engineers, and own your work from design to production. ", 3+rng.IntN(40))
	fmt.Fprintf(&sb, "We offer a salary of %dk-%dk, %s and %s.", 50+rng.IntN(60), 110+rng.IntN(90), pick(perks), pick(perks))
	return db.NewJob{
		Site:        site,
		JobURL:      fmt.Sprintf("https://%s.example.com/jobs/%s/%08x", site, slug, rng.Uint32()),
		Title:       title,
		Company:     company,
		Location:    pick(places),
		Description: sb.String(),
	}
}
