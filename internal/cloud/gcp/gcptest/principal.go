package gcptest

// TokenPrincipal answers whose access token value is (a token the server
// minted, or a self-signed JWT of a key it made) while it is valid: how a
// front of another emulator (fake-gcs-server checks no credentials) tells
// who signed a request.
func (s *Server) TokenPrincipal(value string) (principal string, ok bool) {
	s.mu.Lock()
	t := s.tokens[value]
	s.mu.Unlock()
	if t == nil {
		if t, _ = s.selfSignedJWT(value); t == nil {
			return "", false
		}
	}
	if !s.now().Before(t.expiry) {
		return "", false
	}
	return t.principal, true
}
