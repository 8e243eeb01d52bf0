package chaos

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// ChildEnv makes the test binary run a worker instead of the tests (see TestMain): the
// campaign's workers are child processes of the test binary itself.
const ChildEnv = "CONFITURE_CHAOS_CHILD_WORKER"

// readyFileEnv names the file the child writes once it takes requests.
const readyFileEnv = "CONFITURE_CHAOS_READY_FILE"

// WorkerMain is the main function of a child worker: worker.ServeEnv, configured from the
// CONFITURE_* variables the harness sets, logging JSON records at info on stderr.
func WorkerMain() int {
	return worker.ServeEnv(os.Getenv(readyFileEnv), slog.LevelInfo, os.Stderr)
}

// proc is one worker process.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	// fault is its CONFITURE_FAULT ("" for a clean worker).
	fault string
	done  chan struct{}
	ready atomic.Bool
	// signalled says the harness killed or stopped it: its exit is no news.
	signalled atomic.Bool
	// restartAfter is how long a worker that died at its fault point stays down.
	restartAfter time.Duration
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// diedAtFaultPoint reports whether the process killed itself at its fault point.
func (p *proc) diedAtFaultPoint() bool {
	b, err := os.ReadFile(p.logPath)
	return err == nil && strings.Contains(string(b), "fault: SIGKILL at ")
}

// slot is a place for one worker process: slots 0 and 1 are the two workers every schedule
// keeps, slot 2 the third that joins and leaves.
type slot struct {
	e   *schedule
	idx int

	mu  sync.Mutex
	cur *proc
	gen int
	// busy says a fault owns the slot for now: other faults leave it alone.
	busy bool
}

// acquire takes the slot for a fault; false if another fault has it.
func (s *slot) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy {
		return false
	}
	s.busy = true
	return true
}

func (s *slot) release() {
	s.mu.Lock()
	s.busy = false
	s.mu.Unlock()
}

// live reports whether the slot's worker runs and took requests.
func (s *slot) live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil && s.cur.alive() && s.cur.ready.Load()
}

func (s *slot) current() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// launch starts a worker in the slot with faultSpec (CONFITURE_FAULT, "" for none) and waits
// until it takes requests; if it dies at its fault point, it is restarted clean after
// restartAfter. A worker already running there is left as it is.
func (s *slot) launch(faultSpec string, restartAfter time.Duration) error {
	s.mu.Lock()
	if s.cur != nil && s.cur.alive() {
		s.mu.Unlock()
		return nil
	}
	s.gen++
	name := fmt.Sprintf("worker-%d-%02d", s.idx, s.gen)
	logPath := filepath.Join(s.e.logDir, name+".log")
	ready := filepath.Join(s.e.logDir, name+".ready")
	logFile, err := os.Create(logPath)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	cmd := exec.Command(s.e.exe, "-test.run=^$")
	cmd.Env = append(s.e.baseEnv(), ChildEnv+"=1", readyFileEnv+"="+ready,
		"CONFITURE_DATA_DIR="+filepath.Join(s.e.dataDir, name))
	if faultSpec != "" {
		cmd.Env = append(cmd.Env, fault.Env+"="+faultSpec)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p := &proc{cmd: cmd, logPath: logPath, fault: faultSpec, done: make(chan struct{}), restartAfter: restartAfter}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		s.mu.Unlock()
		return err
	}
	s.cur = p
	s.mu.Unlock()
	s.e.logf("worker %d: started pid %d%s (%s)", s.idx, cmd.Process.Pid, faultNote(faultSpec), logPath)
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
		s.exited(p)
	}()

	deadline := time.After(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			p.ready.Store(true)
			return nil
		}
		select {
		case <-p.done:
			s.mu.Lock()
			if s.cur == p {
				s.cur = nil
			}
			s.mu.Unlock()
			return fmt.Errorf("worker %d exited before it was ready (%s): %s", s.idx, p.cmd.ProcessState, lastLine(p.logPath))
		case <-deadline:
			return fmt.Errorf("worker %d not ready after 60s (%s)", s.idx, logPath)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func faultNote(spec string) string {
	if spec == "" {
		return ""
	}
	return " with " + fault.Env + "=" + spec
}

// ensure launches a clean worker in the slot, trying again until it is up or deadline passes
// (a worker cannot start while NATS is down, for one).
func (s *slot) ensure(deadline time.Time) error {
	for {
		err := s.launch("", 0)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		s.e.logf("worker %d: %v; trying again", s.idx, err)
		time.Sleep(time.Second)
	}
}

// stop sends sig to the slot's worker and waits for it to exit (SIGKILL if it lingers).
func (s *slot) stop(sig syscall.Signal) {
	s.mu.Lock()
	p := s.cur
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.signalled.Store(true)
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		s.e.logf("worker %d: still running 30s after %s; SIGKILL", s.idx, sig)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	s.mu.Lock()
	if s.cur == p {
		s.cur = nil
	}
	s.mu.Unlock()
}

// exited handles the exit of p: a worker the harness signalled is expected to go; one that
// died at its fault point is restarted clean after a pause; one that was never ready is the
// business of launch; any other exit is a worker dying by itself, which the campaign reports.
func (s *slot) exited(p *proc) {
	switch {
	case p.signalled.Load():
		return
	case p.diedAtFaultPoint():
		s.e.logf("worker %d: died at its fault point (%s)", s.idx, p.fault)
		s.e.countFaultDeath()
		s.e.background(func() {
			time.Sleep(p.restartAfter)
			if !s.acquire() {
				return // a fault has the slot: it restarts it
			}
			defer s.release()
			s.mu.Lock()
			stale := s.cur != p
			s.mu.Unlock()
			if stale || s.e.stopping.Load() {
				return
			}
			if err := s.ensure(time.Now().Add(time.Minute)); err != nil {
				s.e.logf("worker %d: restart after its fault point: %v", s.idx, err)
			}
		})
	case !p.ready.Load():
		return
	default:
		s.e.violate(Violation{Invariant: 0, What: fmt.Sprintf("worker %d (pid %d) exited by itself (%s); last line: %s; log %s",
			s.idx, p.cmd.Process.Pid, p.cmd.ProcessState, lastLine(p.logPath), p.logPath)})
		s.e.background(func() {
			time.Sleep(time.Second)
			if !s.acquire() {
				return
			}
			defer s.release()
			s.mu.Lock()
			stale := s.cur != p
			s.mu.Unlock()
			if !stale && !s.e.stopping.Load() {
				_ = s.ensure(time.Now().Add(time.Minute))
			}
		})
	}
}

// lastLine returns the last non-empty line of a log file, shortened.
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	l := lines[len(lines)-1]
	if len(l) > 400 {
		l = l[:400] + "..."
	}
	return l
}

// errNoCandidate is returned by a fault that found nothing to strike.
var errNoCandidate = errors.New("nothing to strike")
