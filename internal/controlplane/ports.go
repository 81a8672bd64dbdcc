package controlplane

import (
	"fmt"
	"net"
)

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1 a moment ago.
//
// All n listeners are held open until every port is chosen, so the ports are distinct from each other; another
// process can still take one before the caller binds it, which is why Start retries on "address already in use".
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserving a free loopback port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
