package tcpproxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echo serves a TCP echo on a free port and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return l.Addr().String()
}

func roundTrip(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err := io.ReadFull(c, buf)
	return err
}

func TestDownRefusesAndCutsUpForwardsAgain(t *testing.T) {
	t.Parallel()
	p, err := New(echo(t))
	require.NoError(t, err)
	t.Cleanup(p.Close)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, roundTrip(c))

	p.Down()
	p.Down() // outages nest
	require.True(t, p.IsDown())
	require.Error(t, roundTrip(c), "a carried connection is cut")
	_, err = net.Dial("tcp", p.Addr())
	require.Error(t, err, "new connections are refused")

	require.NoError(t, p.Up())
	require.True(t, p.IsDown(), "one outage is still in force")
	require.NoError(t, p.Up())
	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c2.Close()
	require.NoError(t, roundTrip(c2))
}
