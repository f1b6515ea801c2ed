package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobrelay/jobrelay/consumer"
)

func TestConsumerStartLogHidesHandlerSecrets(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{
		"exec:API_TOKEN=envsecret1 python3 review.py --token argsecret2",
		"http:https://reviewer:passsecret3@review.internal/v1?token=querysecret4",
		"https://usersecret5@review.internal/v1?api_key=querysecret6",
	} {
		for _, a := range consumerAttrs(&consumer.Config{}, spec, "c1") {
			for _, secret := range []string{"envsecret1", "argsecret2", "passsecret3", "querysecret4", "usersecret5", "querysecret6"} {
				require.NotContains(t, a.Value.String(), secret, "%s of %s", a.Key, spec)
			}
		}
	}
}
