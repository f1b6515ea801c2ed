package main

import (
	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/relay"
)

const runHelp = `Runs the whole pipeline in one process, the default on one machine: applies
the migrations, then runs a relay and a consumer side by side until SIGINT
or SIGTERM. It takes the settings of both "jobrelay relay" and
"jobrelay consume".`

func newRunCommand() command {
	return &pipelineCmd{name: "run", synopsis: "jobrelay run [flags]", help: runHelp,
		relay: &relay.Config{}, consumer: &consumer.Config{}, migrate: true}
}
