package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sightline-io/sightline/internal/version"
)

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("query", "[--server URL] [--format table|json|csv] \"SQL\"",
		"Runs one SQL statement against a Sightline server's POST /api/v1/query and prints the answer.", stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "server base URL")
	format := fs.String("format", "table", "output format: table, json or csv")
	timeout := fs.Duration("timeout", 60*time.Second, "request timeout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "sightline query: exactly one SQL argument is required")
		fs.Usage()
		return errUsage
	}
	switch *format {
	case "table", "json", "csv":
	default:
		fmt.Fprintf(stderr, "sightline query: unknown --format %q\n", *format)
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, raw, err := postQuery(ctx, *server, fs.Arg(0))
	if err != nil {
		return err
	}
	switch *format {
	case "json":
		_, err = stdout.Write(append(bytes.TrimSpace(raw), '\n'))
		return err
	case "csv":
		return writeCSV(stdout, res)
	default:
		return writeTable(stdout, res)
	}
}

// queryAnswer is the body of a POST /api/v1/query answer.
type queryAnswer struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	Error   string   `json:"error"`
}

func postQuery(ctx context.Context, server, sql string) (*queryAnswer, []byte, error) {
	body, err := json.Marshal(map[string]string{"sql": sql})
	if err != nil {
		return nil, nil, err
	}
	url := strings.TrimRight(server, "/") + "/api/v1/query"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("query %s: %w", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, nil, fmt.Errorf("read answer: %w", err)
	}
	var ans queryAnswer
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep 64-bit ids exact
	jsonErr := dec.Decode(&ans)
	if resp.StatusCode != http.StatusOK {
		if jsonErr == nil && ans.Error != "" {
			return nil, nil, fmt.Errorf("server answered %s: %s", resp.Status, ans.Error)
		}
		return nil, nil, fmt.Errorf("server answered %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	if jsonErr != nil {
		return nil, nil, fmt.Errorf("decode answer: %w", jsonErr)
	}
	return &ans, raw, nil
}

func cellString(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	case json.Number:
		return x.String()
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	default:
		return fmt.Sprint(x)
	}
}

func writeTable(w io.Writer, res *queryAnswer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(res.Columns, "\t"))
	for _, row := range res.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			cells[i] = strings.ReplaceAll(cellString(v), "\t", " ")
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "(%d rows)\n", len(res.Rows))
	return err
}

func writeCSV(w io.Writer, res *queryAnswer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(res.Columns); err != nil {
		return err
	}
	for _, row := range res.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			if v == nil {
				continue
			}
			cells[i] = cellString(v)
		}
		if err := cw.Write(cells); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "", "Prints the version of this binary.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, "sightline", versionString())
	return err
}

func versionString() string { return version.Version }
