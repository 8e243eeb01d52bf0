package bus

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func TestShrinkEventDropsDataAndKeepsTheFact(t *testing.T) {
	t.Parallel()
	ev := contract.Event{
		Schema: contract.EventSchemaV1, ID: "6f1c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41", Time: time.Now().UTC(),
		Kind: contract.KindRunRejected, Run: "6f1c2b0e-5d1a-4c57-9a53-3f0c1e7d2a42", Target: "default",
		Message: strings.Repeat("x", 50000), Data: json.RawMessage(`{"big":"` + strings.Repeat("y", 50000) + `"}`),
		Error: &contract.EventError{Code: contract.CodeInvalidRequest, Message: strings.Repeat("z", 50000)},
	}
	data, err := json.Marshal(ev)
	require.NoError(t, err)
	out := shrinkEvent(data, slog.New(slog.DiscardHandler))
	require.Less(t, len(out), 4096)
	got, err := contract.DecodeEvent(out)
	require.NoError(t, err, "still a valid event")
	require.Equal(t, ev.ID, got.ID)
	require.Equal(t, ev.Kind, got.Kind)
	require.Nil(t, got.Data)
	require.Contains(t, got.Message, "max_payload")
}
