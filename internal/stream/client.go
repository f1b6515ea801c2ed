package stream

import (
	"errors"

	"github.com/redis/go-redis/v9"
)

// ErrNoContextTimeout is CheckClient's error.
var ErrNoContextTimeout = errors.New("the Redis client must be created with ContextTimeoutEnabled: " +
	"the relay and the consumer bound every Redis call with its context's deadline, so that a stalled Redis cannot hold row locks or a shutdown")

// CheckClient reports a client whose options do not honour context
// deadlines. go-redis ignores them unless ContextTimeoutEnabled is set, and
// bounds a call with its ReadTimeout and WriteTimeout alone (3 seconds by
// default, none at -1): a stalled Redis would then hold a relay's row locks
// past CycleTimeout, and a consumer's shutdown past ShutdownTimeout.
// Clients it cannot look into (other implementations of UniversalClient)
// pass: New's doc states the requirement.
func CheckClient(rdb redis.UniversalClient) error {
	var enabled bool
	switch c := rdb.(type) {
	case *redis.Client:
		enabled = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		enabled = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		enabled = c.Options().ContextTimeoutEnabled
	case nil:
		return errors.New("the Redis client is nil")
	default:
		return nil
	}
	if !enabled {
		return ErrNoContextTimeout
	}
	return nil
}
