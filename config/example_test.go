package config_test

import (
	"fmt"

	"github.com/gmod-realtime/realtime/config"
)

// A broken file reports every problem at once, each naming the file, the key
// and the value.
func ExampleParse() {
	_, err := config.Parse("realtime.toml", []byte(`
[queue]
max_events = 0
overflow = "drop_oldset"

[[routes]]
name = "players"
pattern = "player:[ab"
handler = "OnPlayer"
ratee = "100/s"

[[routes]]
name = "players"
channel = "chat:message"
handler = ""
rate = "100/x"
`))
	fmt.Println(err)
	// Output:
	// realtime.toml: queue.max_events: 0 must be at least 1
	// realtime.toml: queue.overflow: "drop_oldset" is not one of "drop_newest", "drop_oldest" (did you mean "drop_oldest"?)
	// realtime.toml: routes[0].pattern: "player:[ab": unterminated character class (missing ]) (at byte 7)
	// realtime.toml: routes[0].ratee: unknown key (did you mean "rate"?)
	// realtime.toml: routes[1].handler: is missing (want a realtime.Handler name, or "hook:HookName")
	// realtime.toml: routes[1].name: "players" is also the name of routes[0]; route names must be unique
	// realtime.toml: routes[1].rate: "100/x" is not a rate (want N/s, N/m or N/h, or "unlimited")
}
