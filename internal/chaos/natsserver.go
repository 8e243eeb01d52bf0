package chaos

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServer is an in-process NATS server with JetStream that the harness stops and starts
// again on the same port with the same store, as a real outage and restart would.
type natsServer struct {
	mu   sync.Mutex
	opts server.Options
	s    *server.Server
}

func startNATS(storeDir string) (*natsServer, error) {
	n := &natsServer{opts: server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: storeDir,
		NoSigs: true, NoLog: true, MaxPayload: 8 << 20}}
	if err := n.start(); err != nil {
		return nil, err
	}
	n.opts.Port = n.s.Addr().(*net.TCPAddr).Port
	return n, nil
}

// start starts the server unless it runs.
func (n *natsServer) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.s != nil {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ { // the port may linger a moment after a shutdown
		opts := n.opts
		var s *server.Server
		if s, err = server.NewServer(&opts); err != nil {
			return err
		}
		go s.Start()
		if s.ReadyForConnections(15 * time.Second) {
			n.s = s
			return nil
		}
		s.Shutdown()
		s.WaitForShutdown()
		err = errors.New("NATS server not ready for connections")
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// stop shuts the server down; it reports whether it was running.
func (n *natsServer) stop() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.s == nil {
		return false
	}
	n.s.Shutdown()
	n.s.WaitForShutdown()
	n.s = nil
	return true
}

func (n *natsServer) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.s != nil
}

func (n *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.opts.Port) }
