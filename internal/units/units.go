// Package units writes quantities for people: sizes in bytes as "8.0 KiB" or "150.0 MiB",
// durations in milliseconds as "812 ms" or "1.2 s".
// The dry-run's warnings, submit's report and the dry-run page share it, so a table's size reads
// the same everywhere.
package units

import (
	"fmt"
	"strings"
	"time"
)

// Bytes renders a size in bytes with binary prefixes and one decimal: 512 B, 8.0 KiB,
// 150.0 MiB, 1.2 GiB.
func Bytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// Millis renders fractional milliseconds for a person: 0 ms, 0.42 ms, 7.5 ms, 812 ms, 1.2 s,
// 2m05s.
func Millis(ms float64) string {
	switch {
	case ms <= 0:
		return "0 ms"
	case ms < 1:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 10:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", ms), ".0") + " ms"
	case ms < 1000:
		return fmt.Sprintf("%.0f ms", ms)
	case ms < 60_000:
		return strings.TrimSuffix(fmt.Sprintf("%.2f", ms/1000), "0") + " s"
	}
	d := time.Duration(ms * float64(time.Millisecond)).Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
