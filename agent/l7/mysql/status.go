package mysql

import "github.com/sightline-io/sightline/flowlog"

// errorStatus classifies an ERR packet. The SQLSTATE class says whose fault
// it is for most errors: 21 (cardinality), 22 (data), 23 (constraint), 28
// (authorisation), 3D (no database), 42 (syntax or access), 44 (check
// option), 07 (dynamic SQL), 24/25/34 (cursor/transaction state) are the
// client's. Errors reported as the catch-all HY000 are the server's except
// a few known client ones; everything else (08 connection, 40 rollback and
// deadlock, 53/57/58-like resources, 70100 interrupted, HY000 generic) is
// the server's.
func errorStatus(code uint16, state []byte) flowlog.ResponseStatus {
	if len(state) == 5 {
		switch string(state[:2]) {
		case "21", "22", "23", "28", "3D", "42", "44", "07", "24", "25", "34", "3F":
			return flowlog.StatusClientError
		}
	}
	switch code {
	case 1044, 1045, 1046, 1049, 1050, 1051, 1054, 1062, 1064, 1142, 1143, 1146, 1149,
		1210, 1243, 1292, 1366, 1406, 1048, 1364, 1451, 1452:
		return flowlog.StatusClientError
	}
	return flowlog.StatusServerError
}
