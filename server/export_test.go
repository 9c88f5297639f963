package server

import "net"

// SetListen replaces how s opens its listeners; call it before Start.
func SetListen(s *Server, listen func(network, addr string) (net.Listener, error)) { s.listen = listen }
