package main

import (
	"github.com/jobrelay/jobrelay/consumer"
	"github.com/jobrelay/jobrelay/relay"
)

const runHelp = `Runs the whole pipeline in one process, the default on one machine: applies
the migrations, then runs a relay and a consumer side by side until SIGINT
or SIGTERM. It takes the settings of both "jobrelay relay" and
"jobrelay consume".`

func runCmd(a *app, args []string) error {
	p := &pipelineCmd{name: "run", relay: &relay.Config{}, consumer: &consumer.Config{}, migrate: true}
	s := newSettings("run", a.env)
	p.bind(s)
	if err := a.parseNoArgs(s, args, "jobrelay run [flags]", runHelp); err != nil {
		return err
	}
	return p.start(a.ctx, s, a.logger(p.common.LogFormat, p.common.LogLevel), a.abort)
}
