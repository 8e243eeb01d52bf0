package runview

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/schollz/progressbar/v3"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// RolloutRenderer shows a rollout's events to a person: a line per wave and per failed target,
// and on a terminal a progress bar of the targets done (completed, failed or skipped) with the
// running and failed counts; or, with JSON, each event as one line.
type RolloutRenderer struct {
	w    io.Writer
	opts RenderOptions
	bar  *progressbar.ProgressBar
	last *contract.RolloutStatus
	err  error
}

// NewRolloutRenderer returns a renderer writing to w.
func NewRolloutRenderer(w io.Writer, opts RenderOptions) *RolloutRenderer {
	return &RolloutRenderer{w: w, opts: opts}
}

// Status is the rollout's status as its latest event gave it, or nil.
func (r *RolloutRenderer) Status() *contract.RolloutStatus { return r.last }

// Render shows one event of the rollout.
func (r *RolloutRenderer) Render(ev *contract.Event) {
	if r.opts.JSON {
		data, err := json.Marshal(ev)
		if err == nil {
			_, err = fmt.Fprintf(r.w, "%s\n", data)
		}
		r.keep(err)
		r.decode(ev)
		return
	}
	st := r.decode(ev)
	switch ev.Kind {
	case contract.KindRolloutProgress:
		if st != nil && st.Member != nil && st.Member.State == contract.MemberFailed {
			r.line(fmt.Sprintf("  %s %s: %s", r.paint(ansiRed, "✗"), st.Member.Target, memberReason(st.Member)))
		}
	case contract.KindRunAccepted, contract.KindRunDuplicate, contract.KindRolloutStarted, contract.KindWaveStarted,
		contract.KindWaveCompleted, contract.KindRolloutResumed:
		r.line(r.paint(ansiDim, "• ") + ev.Message)
	case contract.KindRolloutHalted:
		r.line(r.paint(ansiRed, "■ ") + ev.Message)
	case contract.KindRolloutCompleted:
		mark := r.paint(ansiGreen, "✓ ")
		if st != nil && (st.Failed > 0 || st.Skipped > 0) {
			mark = r.paint(ansiRed, "■ ")
		}
		r.line(mark + ev.Message)
	case contract.KindRunRejected:
		msg := ev.Message
		if ev.Error != nil {
			msg = ev.Error.Code + ": " + ev.Error.Message
		}
		r.line(r.paint(ansiRed, "✗ rejected: ") + msg)
	default:
		r.line(r.paint(ansiDim, "• ") + ev.Kind + " " + ev.Message)
	}
	r.drawBar()
}

func (r *RolloutRenderer) decode(ev *contract.Event) *contract.RolloutStatus {
	if len(ev.Data) == 0 || !strings.HasPrefix(ev.Kind, "rollout.") && !strings.HasPrefix(ev.Kind, "wave.") {
		return nil
	}
	var st contract.RolloutStatus
	if json.Unmarshal(ev.Data, &st) != nil {
		return nil
	}
	r.last = &st
	return &st
}

func memberReason(m *contract.RolloutMember) string {
	if m.Error == nil {
		return m.State
	}
	return m.Error.Code + ": " + m.Error.Message
}

// line prints s on a line of its own, above the progress bar.
func (r *RolloutRenderer) line(s string) {
	if r.bar != nil {
		_ = r.bar.Clear()
	}
	_, err := fmt.Fprintln(r.w, s)
	r.keep(err)
}

func (r *RolloutRenderer) keep(err error) {
	if r.err == nil {
		r.err = err
	}
}

// drawBar draws, on a terminal, the targets done of the rollout's total below its lines.
func (r *RolloutRenderer) drawBar() {
	st := r.last
	if !r.opts.Terminal || r.err != nil || st == nil || st.Total == 0 {
		return
	}
	done := st.Completed + st.Failed + st.Skipped
	if done >= st.Total || st.State != contract.RolloutRunning {
		r.endBar()
		return
	}
	if r.bar == nil {
		r.bar = progressbar.NewOptions(st.Total,
			progressbar.OptionSetWriter(r.w),
			progressbar.OptionUseANSICodes(true),
			progressbar.OptionSetWidth(barWidth),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionThrottle(0),
		)
	}
	_ = r.bar.Set(done)
	r.bar.Describe(fmt.Sprintf("%swave %d/%d  %d running  %d failed", barIndent, st.Wave+1, st.Waves, st.Running, st.Failed))
}

func (r *RolloutRenderer) endBar() {
	if r.bar != nil {
		_ = r.bar.Clear()
		r.bar = nil
	}
}

// Close removes the progress bar, if one is drawn.
func (r *RolloutRenderer) Close() { r.endBar() }

// Summary writes what the rollout came to: its counts, and its failed targets with their
// reasons.
func (r *RolloutRenderer) Summary(w io.Writer) {
	st := r.last
	if st == nil {
		return
	}
	fmt.Fprintf(w, "rollout %s of group %s: %s; %d target(s): %d completed, %d failed, %d skipped, %d running, %d not started\n",
		st.Rollout, st.Group, st.State, st.Total, st.Completed, st.Failed, st.Skipped, st.Running, st.Pending)
	if len(st.Failures) > 0 {
		fmt.Fprintln(w, "failed targets:")
		for i := range st.Failures {
			f := &st.Failures[i]
			fmt.Fprintf(w, "  %s (run %s): %s\n", f.Target, f.Run, memberReason(f))
		}
		if st.Failed > len(st.Failures) {
			fmt.Fprintf(w, "  ... and %d more\n", st.Failed-len(st.Failures))
		}
	}
}

func (r *RolloutRenderer) paint(code, s string) string {
	if !r.opts.Color {
		return s
	}
	return code + s + ansiReset
}
