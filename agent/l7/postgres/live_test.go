package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// clientEnv makes the test binary a pgx client (the agent never traces its
// own process): its value is the connection URL.
const clientEnv = "SIGHTLINE_PG_CLIENT"

const (
	liveUser     = "app"
	livePassword = "PgS3cret7"
	liveDB       = "shop"
)

func TestMain(m *testing.M) {
	livetest.Child(clientEnv, runPgx)
	os.Exit(m.Run())
}

// runPgx drives pgx: the extended protocol (prepare, then execute, each in
// its own Sync batch), an INSERT with affected rows and a failing query.
func runPgx(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, "INSERT INTO items (id, name) VALUES ($1, $2)", 3, "pear")
	if err != nil || tag.RowsAffected() != 1 {
		return fmt.Errorf("insert: %v %v", tag, err)
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 3).Scan(&name); err != nil {
		return fmt.Errorf("select: %w", err)
	}
	_, err = conn.Exec(ctx, "SELECT * FROM missing WHERE id = $1", 1)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42P01" {
		return fmt.Errorf("missing table: want 42P01, got %v", err)
	}
	return nil
}

// pgBin finds a PostgreSQL server program.
func pgBin(t *testing.T, name string) string {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) == 0 {
		t.Fatalf("livetest: %s not installed (postgresql)", name)
	}
	return matches[len(matches)-1]
}

// startPostgres runs initdb and postgres as the postgres user (the server
// refuses root) on a free port, with superuser app (SCRAM password) and
// database shop.
func startPostgres(t *testing.T) int {
	t.Helper()
	livetest.RequireTools(t, "runuser", "psql")
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("livetest: no postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(livePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pw, uid, gid); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	livetest.Run(t, "runuser", "-u", "postgres", "--", pgBin(t, "initdb"), "-D", data, "-U", liveUser,
		"--auth=scram-sha-256", "--pwfile="+pw, "--no-sync", "-E", "UTF8")
	port := livetest.FreePort(t)
	livetest.Start(t, "runuser", "-u", "postgres", "--", pgBin(t, "postgres"), "-D", data,
		"-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=20")
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second)
	// The server accepts TCP before it accepts logins: retry.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := psql(port, "postgres", "CREATE DATABASE "+liveDB)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create database: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return port
}

func psql(port int, db string, cmds ...string) (string, error) {
	args := []string{"-X", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", liveUser, "-d", db}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	cmd := exec.Command("psql", args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+livePassword)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// liveCase is a row the live and capture tests expect.
type liveCase struct {
	what     string
	reqType  string
	resource string
	status   flowlog.ResponseStatus
	exc      string
	affected int64 // -1: none
}

var liveCases = []liveCase{
	{"login", "LOGIN", "", flowlog.StatusSuccess, "", -1},
	{"create", "CREATE", "CREATE TABLE items (id int primary key, name text)", flowlog.StatusSuccess, "", -1},
	{"insert", "INSERT", "INSERT INTO items VALUES (?, ?), (?, ?)", flowlog.StatusSuccess, "", 2},
	{"select", "SELECT", "SELECT * FROM items WHERE name = ?", flowlog.StatusSuccess, "", 1},
	{"syntax error", "SELEC", "SELEC ?", flowlog.StatusClientError, `42601: syntax error at or near "SELEC"`, -1},
	{"missing table", "SELECT", "SELECT * FROM nosuch WHERE id IN (?)", flowlog.StatusClientError, `42P01: relation "nosuch" does not exist`, -1},
	{"terminate", "TERMINATE", "", flowlog.StatusSuccess, "", -1},
	{"pgx prepare", "PREPARE", "INSERT INTO items (id, name) VALUES ($1, $2)", flowlog.StatusSuccess, "", -1},
	{"pgx insert", "INSERT", "INSERT INTO items (id, name) VALUES ($1, $2)", flowlog.StatusSuccess, "", 1},
	{"pgx select", "SELECT", "SELECT name FROM items WHERE id = $1", flowlog.StatusSuccess, "", 1},
	{"pgx error", "PREPARE", "SELECT * FROM missing WHERE id = $1", flowlog.StatusClientError, `42P01: relation "missing" does not exist`, -1},
}

func checkRows(t *testing.T, rows []flowlog.L7FlowLog, obs string) {
	t.Helper()
	for _, c := range liveCases {
		var got *flowlog.L7FlowLog
		for i := range rows {
			r := &rows[i]
			if r.ObservationPoint == obs && r.RequestType == c.reqType && r.RequestResource == c.resource {
				got = r
				break
			}
		}
		if got == nil {
			t.Errorf("%s: no %s row %q %q; rows:\n%s", c.what, obs, c.reqType, c.resource, livetest.Describe(rows))
			continue
		}
		checkRow(t, c, got)
	}
	ssl := 0
	for i := range rows {
		if r := &rows[i]; r.ObservationPoint == obs && r.RequestType == "SSL_REQUEST" && r.ResponseResult == "N" &&
			r.ResponseStatus == flowlog.StatusSuccess && r.Type == flowlog.TypeSession {
			ssl++
		}
	}
	if ssl == 0 {
		t.Errorf("no %s SSL_REQUEST row answered N (psql's sslmode=prefer)", obs)
	}
	for i := range rows {
		r := &rows[i]
		for _, f := range []string{r.RequestResource, r.Endpoint, r.RequestDomain, r.ResponseException, r.ResponseResult, fmt.Sprint(r.Attributes)} {
			if strings.Contains(f, livePassword) {
				t.Errorf("password in a row: %s", livetest.Describe(rows[i:i+1]))
			}
		}
		if strings.Contains(r.RequestResource, "alice") {
			t.Errorf("literal not masked: %q", r.RequestResource)
		}
	}
}

func checkRow(t *testing.T, c liveCase, r *flowlog.L7FlowLog) {
	t.Helper()
	desc := livetest.Describe([]flowlog.L7FlowLog{*r})
	if r.L7Protocol != flowlog.L7Postgres || r.L7ProtocolStr != "PostgreSQL" || r.Version != "3.0" {
		t.Errorf("%s: protocol/version: %s version=%q", c.what, desc, r.Version)
	}
	if r.RequestDomain != liveDB {
		t.Errorf("%s: domain %q, want %q", c.what, r.RequestDomain, liveDB)
	}
	if r.Type != flowlog.TypeSession || r.ResponseStatus != c.status || r.ResponseCode != nil || r.RequestID != nil {
		t.Errorf("%s: type/status/code/id: %s", c.what, desc)
	}
	if c.reqType != "TERMINATE" && r.ResponseDuration == 0 {
		t.Errorf("%s: zero duration: %s", c.what, desc)
	}
	if r.ResponseException != c.exc {
		t.Errorf("%s: exception %q, want %q", c.what, r.ResponseException, c.exc)
	}
	if c.affected < 0 && r.SQLAffectedRows != nil || c.affected >= 0 && (r.SQLAffectedRows == nil || int64(*r.SQLAffectedRows) != c.affected) {
		t.Errorf("%s: affected rows %v, want %d", c.what, r.SQLAffectedRows, c.affected)
	}
	if c.reqType != "LOGIN" && c.reqType != "TERMINATE" && r.Endpoint == "" {
		t.Errorf("%s: no endpoint: %s", c.what, desc)
	}
}

// TestLivePostgres runs PostgreSQL with psql (simple queries, an SSL
// request answered 'N') and pgx (extended protocol) under the agent.
func TestLivePostgres(t *testing.T) {
	port := startPostgres(t)
	stop := livetest.Record(t, "postgres.pcap", fmt.Sprintf("tcp port %d", port))
	a := livetest.StartAgent(t, New(l7.Config{}))

	out, err := psql(port, liveDB, "CREATE TABLE items (id int primary key, name text)",
		"INSERT INTO items VALUES (1, 'alice'), (2, 'bob')", "SELECT * FROM items WHERE name = 'alice'",
		"SELEC 1", "SELECT * FROM nosuch WHERE id IN (1, 2)")
	t.Logf("psql: %v\n%s", err, out)
	url := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", liveUser, livePassword, port, liveDB)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+url)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgx client: %v\n%s", err, out)
	}
	a.WaitRows(t, "pgx error", 1, 30*time.Second, func(r *flowlog.L7FlowLog) bool {
		return int(r.ServerPort) == port && r.ObservationPoint == flowlog.ObsServerProcess &&
			r.RequestResource == "SELECT * FROM missing WHERE id = $1"
	})
	time.Sleep(time.Second) // the last Terminate
	stop()
	all := a.Match(livetest.ServerPort(port))
	t.Logf("rows:\n%s", livetest.Describe(all))
	checkRows(t, all, flowlog.ObsServerProcess)
	checkRows(t, all, flowlog.ObsClientProcess)
}
