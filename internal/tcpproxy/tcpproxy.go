// Package tcpproxy is a TCP proxy that tests can make unreachable: while down, its port refuses
// new connections and the connections it carried are cut, as when a database restarts or a
// network splits. The worker's tests and the fault campaign put one between the worker and a
// target database.
package tcpproxy

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections to a backend (a target's PostgreSQL) and can be made
// unreachable.
type Proxy struct {
	addr    string
	backend string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]struct{}
	// downs counts the outages in force (they may overlap); the proxy is open at 0.
	downs  int
	closed bool
}

// New opens a proxy to backend on a free loopback port.
func New(backend string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{addr: l.Addr().String(), backend: backend, conns: map[net.Conn]struct{}{}}
	p.serve(l)
	return p, nil
}

func (p *Proxy) serve(l net.Listener) {
	p.l = l
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

// track records c as carried, unless the proxy is down (then c is closed).
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.downs > 0 || p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) forward(c net.Conn) {
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	b, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(b) {
		return
	}
	defer p.untrack(b)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Down makes the backend unreachable until the matching Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.downs++
	if p.downs > 1 || p.closed {
		return
	}
	p.cutLocked()
}

// cutLocked stops listening and closes every open connection.
func (p *Proxy) cutLocked() {
	if p.l != nil {
		_ = p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Up ends one outage; the proxy listens again when none is left.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.downs > 0 {
		p.downs--
	}
	return p.listenLocked()
}

// Heal ends every outage.
func (p *Proxy) Heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.downs = 0
	return p.listenLocked()
}

func (p *Proxy) listenLocked() error {
	if p.downs > 0 || p.l != nil || p.closed {
		return nil
	}
	// The port was ours a moment ago; an outgoing connection may hold it briefly.
	var err error
	for i := 0; i < 100; i++ {
		var l net.Listener
		if l, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(l)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("proxy %s: listen again: %w", p.addr, err)
}

// IsDown reports whether an outage is in force.
func (p *Proxy) IsDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.downs > 0
}

// Close stops the proxy for good.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.cutLocked()
}
