package egress

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The owner process of TestCollectAfterKill, killed by the test.
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}
