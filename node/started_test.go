package node

import "testing"

// TestStarted: Started closes once Run has the node up, and with p2p on
// only when the host is built, so the daemon's release of its start-up
// memory comes after the host's set-up.
func TestStarted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p2p  bool
	}{
		{name: "without p2p"},
		{name: "with p2p", p2p: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []func(*Config)
			if tt.p2p {
				opts = append(opts, withP2P(t))
			}
			n, _ := newTestNode(t, []string{"http://127.0.0.1:1/$repo/os/$arch"}, opts...)
			select {
			case <-n.Started():
			case <-t.Context().Done():
				t.Fatal("not started")
			}
			if got := n.side() != nil; got != tt.p2p {
				t.Errorf("p2p side running when started: %v, want %v", got, tt.p2p)
			}
		})
	}
}
