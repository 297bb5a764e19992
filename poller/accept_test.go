package poller

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// listen returns a loopback TCP listener and its fd, which package net has
// made non-blocking. The listener is closed when the test ends.
func listen(t testing.TB) (*net.TCPListener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, ln.Close()) })
	tln := ln.(*net.TCPListener)
	rc, err := tln.SyscallConn()
	require.NoError(t, err)
	lfd := -1
	require.NoError(t, rc.Control(func(fd uintptr) { lfd = int(fd) }))
	return tln, lfd
}

// acceptOne accepts the connection that has been dialed to lfd, waiting for
// it to be pending.
func acceptOne(t testing.TB, lfd int) (int, unix.Sockaddr) {
	t.Helper()
	var (
		fd  int
		sa  unix.Sockaddr
		err error
	)
	require.Eventually(t, func() bool {
		fd, sa, err = Accept(lfd)
		return err != unix.EAGAIN
	}, waitTimeout, time.Millisecond)
	require.NoError(t, err)
	return fd, sa
}

// tcpPair returns the raw, non-blocking server-side fd of a loopback TCP
// connection and the client side. Both are closed when the test ends.
func tcpPair(t testing.TB) (fd int, peer net.Conn) {
	t.Helper()
	ln, lfd := listen(t)
	peer, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })
	fd, _ = acceptOne(t, lfd)
	t.Cleanup(func() { assert.NoError(t, unix.Close(fd)) })
	return fd, peer
}

func TestAccept(t *testing.T) {
	ln, lfd := listen(t)

	_, _, err := Accept(lfd)
	require.Equal(t, unix.EAGAIN, err, "nothing pending yet")

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()

	fd, sa := acceptOne(t, lfd)
	defer func() { assert.NoError(t, unix.Close(fd)) }()

	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.NotZero(t, flags&unix.O_NONBLOCK, "O_NONBLOCK")
	fdFlags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	require.NoError(t, err)
	assert.NotZero(t, fdFlags&unix.FD_CLOEXEC, "FD_CLOEXEC")

	// The accepted fd is the other end of conn.
	require.IsType(t, &unix.SockaddrInet4{}, sa)
	assert.Equal(t, conn.LocalAddr().(*net.TCPAddr).Port, sa.(*unix.SockaddrInet4).Port)
	_, err = conn.Write([]byte("hi"))
	require.NoError(t, err)
	var (
		buf [2]byte
		n   int
	)
	require.Eventually(t, func() bool {
		n, err = unix.Read(fd, buf[:])
		return err != unix.EAGAIN
	}, waitTimeout, time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(buf[:n]))

	_, _, err = Accept(lfd)
	assert.Equal(t, unix.EAGAIN, err, "nothing pending any more")
}

func TestAcceptError(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	_, _, err = Accept(fds[0]) // not a listening socket
	assert.ErrorIs(t, err, unix.EINVAL)
	assert.ErrorContains(t, err, "poller: accept")
}

func TestAcceptAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	require.NoError(t, err)
	var lfd int
	require.NoError(t, rc.Control(func(fd uintptr) { lfd = int(fd) }))

	_, _, err = AcceptAddr(lfd)
	require.ErrorIs(t, err, unix.EAGAIN)

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	var fd int
	var addr netip.AddrPort
	require.Eventually(t, func() bool {
		fd, addr, err = AcceptAddr(lfd)
		return err == nil
	}, 5*time.Second, time.Millisecond)
	defer unix.Close(fd)
	assert.Equal(t, c.LocalAddr().(*net.TCPAddr).AddrPort(), addr)
}
