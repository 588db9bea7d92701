package egress

import (
	"os"
	"testing"

	"github.com/vial-run/vial/runtime/crun"
)

func TestMain(m *testing.M) {
	// The crun backend re-executes the current binary as its shim.
	if len(os.Args) > 1 && os.Args[1] == crun.ShimArg {
		os.Exit(crun.ShimMain(os.Args[2:]))
	}
	// The owner process of TestCollectAfterKill, killed by the test.
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}
