package server

import (
	"net"
	"time"
)

// SetListen replaces how s opens its listeners; call it before Start.
func SetListen(s *Server, listen func(network, addr string) (net.Listener, error)) { s.listen = listen }

// SetHTTPTimeouts replaces the public listener's read and write timeouts
// (15s); call it before Start.
func SetHTTPTimeouts(s *Server, read, write time.Duration) {
	s.readTimeout, s.writeTimeout = read, write
}
