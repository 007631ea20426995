package store

// Crash closes the index the way a killed process would leave things:
// in-flight temp files stay, last accesses are not written.
func (s *Store) Crash() error {
	s.mu.Lock()
	for _, p := range s.pending {
		_ = p.f.Close()
	}
	s.mu.Unlock()
	s.closed.Store(true)
	return s.db.Close()
}
