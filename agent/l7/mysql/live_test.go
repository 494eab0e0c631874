package mysql

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

// clientEnv makes the test binary a go-sql-driver client (the agent never
// traces its own process): its value is the DSN.
const clientEnv = "SIGHTLINE_MYSQL_CLIENT"

const (
	liveUser     = "app"
	livePassword = "S3cretPw9"
	liveDB       = "shop"
)

func TestMain(m *testing.M) {
	livetest.Child(clientEnv, runGoClient)
	os.Exit(m.Run())
}

// runGoClient drives go-sql-driver/mysql: prepared statements (the driver
// prepares every query with arguments), an INSERT with affected rows, and a
// failing statement.
func runGoClient(dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS orders (id INT PRIMARY KEY, item VARCHAR(32))"); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	res, err := db.Exec("INSERT INTO orders (id, item) VALUES (?, ?), (?, ?)", 1, "apple", 2, "pear")
	if err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		return fmt.Errorf("insert affected %d rows", n)
	}
	var item string
	if err := db.QueryRow("SELECT item FROM orders WHERE id = ?", 2).Scan(&item); err != nil {
		return fmt.Errorf("select: %w", err)
	}
	_, err = db.Exec("UPDATE missing_table SET x = ? WHERE id = ?", 1, 2)
	var me *gomysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1146 {
		return fmt.Errorf("missing table: want error 1146, got %v", err)
	}
	return nil
}

// startMariaDB initialises a data directory and runs mariadbd on a free
// port, with user app (password livePassword) and database shop.
func startMariaDB(t *testing.T) int {
	t.Helper()
	livetest.RequireTools(t, "mariadbd", "mariadb", "mariadb-install-db")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	livetest.Run(t, "mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db")
	init := filepath.Join(dir, "init.sql")
	script := fmt.Sprintf(`CREATE DATABASE IF NOT EXISTS %[3]s;
CREATE USER IF NOT EXISTS '%[1]s'@'%%' IDENTIFIED BY '%[2]s';
CREATE USER IF NOT EXISTS '%[1]s'@'localhost' IDENTIFIED BY '%[2]s';
GRANT ALL ON *.* TO '%[1]s'@'%%';
GRANT ALL ON *.* TO '%[1]s'@'localhost';
`, liveUser, livePassword, liveDB)
	if err := os.WriteFile(init, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	port := livetest.FreePort(t)
	livetest.Start(t, "mariadbd", "--no-defaults", "--datadir="+data, "--socket="+filepath.Join(dir, "sock"),
		fmt.Sprintf("--port=%d", port), "--bind-address=127.0.0.1", "--user=root", "--init-file="+init,
		"--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve", "--pid-file="+filepath.Join(dir, "pid"))
	livetest.WaitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second)
	return port
}

func mariadbCLI(t *testing.T, port int, compress bool, sql string) {
	t.Helper()
	args := []string{"--no-defaults", "-h127.0.0.1", fmt.Sprintf("-P%d", port), "-u" + liveUser, "-p" + livePassword}
	if compress {
		args = append(args, "--compress")
	}
	args = append(args, liveDB, "-e", sql)
	out, err := runCmd(nil, "mariadb", args...)
	t.Logf("mariadb compress=%v: %v\n%s", compress, err, out)
}

// runCmd runs a program to completion; a failing exit is expected when the
// program is made to run a failing statement.
func runCmd(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// liveCase is a row the live and capture tests expect.
type liveCase struct {
	what     string
	reqType  string
	resource string // exact, or prefix when it ends with "*"
	status   flowlog.ResponseStatus
	code     int32 // 0: no code
	exc      string
	affected int64 // -1: no affected rows
}

var liveCases = []liveCase{
	{"login", "LOGIN", "", flowlog.StatusSuccess, 0, "", -1},
	{"create", "CREATE", "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(?))", flowlog.StatusSuccess, 0, "", 0},
	{"insert", "INSERT", "INSERT INTO t VALUES (?, ?), (?, ?)", flowlog.StatusSuccess, 0, "", 2},
	{"select", "SELECT", "SELECT * FROM t WHERE name = ?", flowlog.StatusSuccess, 0, "", -1},
	{"syntax error", "SELEC", "SELEC ? FROM t", flowlog.StatusClientError, 1064, "42000: You have an error in your SQL syntax*", -1},
	{"compressed update", "UPDATE", "UPDATE t SET name = ? WHERE id = ?", flowlog.StatusSuccess, 0, "", 1},
	{"compressed missing table", "SELECT", "SELECT * FROM nosuch WHERE id IN (?)", flowlog.StatusClientError, 1146, "42S02: Table 'shop.nosuch' doesn't exist", -1},
	{"go create", "CREATE", "CREATE TABLE IF NOT EXISTS orders (id INT PRIMARY KEY, item VARCHAR(?))", flowlog.StatusSuccess, 0, "", 0},
	{"go prepare", "PREPARE", "INSERT INTO orders (id, item) VALUES (?, ?), (?, ?)", flowlog.StatusSuccess, 0, "", -1},
	{"go execute insert", "INSERT", "INSERT INTO orders (id, item) VALUES (?, ?), (?, ?)", flowlog.StatusSuccess, 0, "", 2},
	{"go execute select", "SELECT", "SELECT item FROM orders WHERE id = ?", flowlog.StatusSuccess, 0, "", -1},
	{"go prepare error", "PREPARE", "UPDATE missing_table SET x = ? WHERE id = ?", flowlog.StatusClientError, 1146, "42S02: Table 'shop.missing_table' doesn't exist", -1},
	{"go close", "STMT_CLOSE", "SELECT item FROM orders WHERE id = ?", flowlog.StatusSuccess, 0, "", -1},
	{"quit", "QUIT", "", flowlog.StatusSuccess, 0, "", -1},
}

func (c liveCase) match(r *flowlog.L7FlowLog) bool {
	if r.RequestType != c.reqType {
		return false
	}
	if p, ok := strings.CutSuffix(c.resource, "*"); ok {
		return strings.HasPrefix(r.RequestResource, p)
	}
	return r.RequestResource == c.resource
}

// checkRows asserts every case on rows seen at observation point obs.
func checkRows(t *testing.T, rows []flowlog.L7FlowLog, obs string) {
	t.Helper()
	for _, c := range liveCases {
		var got *flowlog.L7FlowLog
		for i := range rows {
			if rows[i].ObservationPoint == obs && c.match(&rows[i]) {
				got = &rows[i]
				break
			}
		}
		if got == nil {
			t.Errorf("%s: no %s row %q %q; rows:\n%s", c.what, obs, c.reqType, c.resource, livetest.Describe(rows))
			continue
		}
		checkRow(t, c, got)
	}
	for i := range rows {
		r := &rows[i]
		for _, f := range []string{r.RequestResource, r.Endpoint, r.RequestDomain, r.ResponseException, r.ResponseResult, fmt.Sprint(r.Attributes)} {
			if strings.Contains(f, livePassword) {
				t.Errorf("password in a row: %s", livetest.Describe(rows[i:i+1]))
			}
		}
		if strings.Contains(r.RequestResource, "alice") || strings.Contains(r.RequestResource, "apple") {
			t.Errorf("literal not masked: %q", r.RequestResource)
		}
	}
}

func checkRow(t *testing.T, c liveCase, r *flowlog.L7FlowLog) {
	t.Helper()
	desc := livetest.Describe([]flowlog.L7FlowLog{*r})
	if r.L7Protocol != flowlog.L7MySQL || r.L7ProtocolStr != "MySQL" || r.Version != "10" {
		t.Errorf("%s: protocol/version: %s version=%q", c.what, desc, r.Version)
	}
	if r.RequestDomain != liveDB {
		t.Errorf("%s: domain %q, want %q", c.what, r.RequestDomain, liveDB)
	}
	if r.Type != flowlog.TypeSession || r.ResponseStatus != c.status {
		t.Errorf("%s: type/status: %s", c.what, desc)
	}
	if c.reqType != "QUIT" && c.reqType != "STMT_CLOSE" && r.ResponseDuration == 0 {
		t.Errorf("%s: zero duration: %s", c.what, desc)
	}
	if (c.code == 0) != (r.ResponseCode == nil) || r.ResponseCode != nil && *r.ResponseCode != c.code {
		t.Errorf("%s: code: %s", c.what, desc)
	}
	if p, ok := strings.CutSuffix(c.exc, "*"); ok && !strings.HasPrefix(r.ResponseException, p) || !ok && r.ResponseException != c.exc {
		t.Errorf("%s: exception %q, want %q", c.what, r.ResponseException, c.exc)
	}
	if c.affected < 0 && r.SQLAffectedRows != nil || c.affected >= 0 && (r.SQLAffectedRows == nil || int64(*r.SQLAffectedRows) != c.affected) {
		t.Errorf("%s: affected rows %v, want %d", c.what, r.SQLAffectedRows, c.affected)
	}
	if r.RequestID != nil {
		t.Errorf("%s: request id set: %s", c.what, desc)
	}
	if c.reqType != "LOGIN" && c.reqType != "QUIT" && c.reqType != "STMT_CLOSE" && r.Endpoint == "" {
		t.Errorf("%s: no endpoint: %s", c.what, desc)
	}
}

// TestLiveMySQL runs MariaDB with the mariadb CLI (plain and --compress)
// and go-sql-driver/mysql (prepared statements) under the agent.
func TestLiveMySQL(t *testing.T) {
	port := startMariaDB(t)
	stop := livetest.Record(t, "mysql.pcap", fmt.Sprintf("tcp port %d", port))
	a := livetest.StartAgent(t, New(l7.Config{}))

	mariadbCLI(t, port, false, "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20)); "+
		"INSERT INTO t VALUES (1, 'alice'), (2, 'bob'); SELECT * FROM t WHERE name = 'alice'; SELEC 1 FROM t")
	mariadbCLI(t, port, true, "UPDATE t SET name = 'carol' WHERE id = 2; SELECT * FROM nosuch WHERE id IN (1, 2, 3)")
	dsn := fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/%s", liveUser, livePassword, port, liveDB)
	if out, err := runCmd([]string{clientEnv + "=" + dsn}, os.Args[0], "-test.run=^$"); err != nil {
		t.Fatalf("go client: %v\n%s", err, out)
	}

	rows := a.WaitRows(t, "go close", 1, 30*time.Second, func(r *flowlog.L7FlowLog) bool {
		return int(r.ServerPort) == port && r.ObservationPoint == flowlog.ObsServerProcess && r.RequestType == "STMT_CLOSE" &&
			strings.HasPrefix(r.RequestResource, "SELECT item")
	})
	_ = rows
	time.Sleep(time.Second) // the last QUITs
	stop()
	all := a.Match(livetest.ServerPort(port))
	t.Logf("rows:\n%s", livetest.Describe(all))
	checkRows(t, all, flowlog.ObsServerProcess)
	checkRows(t, all, flowlog.ObsClientProcess)
}
