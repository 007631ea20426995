package p2p

import (
	"os"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"go.uber.org/goleak"

	"github.com/flocon/flocon/node/nodetest"
	"github.com/flocon/flocon/verify"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(benchServerEnv); dir != "" {
		os.Exit(runBenchServer(dir)) // the serving side of the benches
	}
	// go-flow-metrics runs one package-wide sweeper once a bandwidth
	// counter exists (the scale bench); it is not ours to stop.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/libp2p/go-flow-metrics.(*sweeper).runActive"))
}

// testKeys is nodetest's keyring: a packager certified by three trusted
// masters, and a stranger key that is in no keyring.
type testKeys struct {
	packager *openpgp.Entity
	stranger *openpgp.Entity
	keyring  *verify.Keyring
}

func testKeyring(t *testing.T) *testKeys {
	t.Helper()
	k := nodetest.SharedKeys(t)
	return &testKeys{packager: k.Packager, stranger: k.Stranger, keyring: k.Keyring}
}

func sign(t *testing.T, key *openpgp.Entity, data []byte) []byte {
	t.Helper()
	return nodetest.Sign(t, key, data)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	nodetest.WaitFor(t, what, cond)
}
