package dns

import (
	"strconv"

	"github.com/sightline-io/sightline/flowlog"
)

// Resource record types rendered or checked by name.
const (
	typeA     = 1
	typeNS    = 2
	typeCNAME = 5
	typeSOA   = 6
	typePTR   = 12
	typeMX    = 15
	typeTXT   = 16
	typeAAAA  = 28
	typeSRV   = 33
	typeDNAME = 39
	typeOPT   = 41
	typeSVCB  = 64
	typeHTTPS = 65
)

// typeName returns the mnemonic of a record type; unknown types become
// "TYPE<n>" (RFC 3597), which allocates, so the common ones are constants.
func typeName(t uint16) string {
	switch t {
	case typeA:
		return "A"
	case typeNS:
		return "NS"
	case typeCNAME:
		return "CNAME"
	case typeSOA:
		return "SOA"
	case typePTR:
		return "PTR"
	case 13:
		return "HINFO"
	case typeMX:
		return "MX"
	case typeTXT:
		return "TXT"
	case typeAAAA:
		return "AAAA"
	case 29:
		return "LOC"
	case typeSRV:
		return "SRV"
	case 35:
		return "NAPTR"
	case typeDNAME:
		return "DNAME"
	case typeOPT:
		return "OPT"
	case 43:
		return "DS"
	case 46:
		return "RRSIG"
	case 47:
		return "NSEC"
	case 48:
		return "DNSKEY"
	case 50:
		return "NSEC3"
	case 52:
		return "TLSA"
	case typeSVCB:
		return "SVCB"
	case typeHTTPS:
		return "HTTPS"
	case 99:
		return "SPF"
	case 250:
		return "TSIG"
	case 251:
		return "IXFR"
	case 252:
		return "AXFR"
	case 255:
		return "ANY"
	case 256:
		return "URI"
	case 257:
		return "CAA"
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// rcodeName returns the mnemonic of a response code (extended codes
// included); unknown codes become "RCODE<n>".
func rcodeName(rc int) string {
	switch rc {
	case 0:
		return "NOERROR"
	case 1:
		return "FORMERR"
	case 2:
		return "SERVFAIL"
	case 3:
		return "NXDOMAIN"
	case 4:
		return "NOTIMP"
	case 5:
		return "REFUSED"
	case 6:
		return "YXDOMAIN"
	case 7:
		return "YXRRSET"
	case 8:
		return "NXRRSET"
	case 9:
		return "NOTAUTH"
	case 10:
		return "NOTZONE"
	case 11:
		return "DSOTYPENI"
	case 16:
		return "BADVERS"
	case 17:
		return "BADKEY"
	case 18:
		return "BADTIME"
	case 19:
		return "BADMODE"
	case 20:
		return "BADNAME"
	case 21:
		return "BADALG"
	case 22:
		return "BADTRUNC"
	case 23:
		return "BADCOOKIE"
	}
	return "RCODE" + strconv.Itoa(rc)
}

// rcodeStatus maps a response code to response_status. The server failed
// on SERVFAIL, NOTIMP and REFUSED (it cannot or will not answer); every
// other non-zero code, NXDOMAIN and FORMERR included, blames the question
// (a name that does not exist, a malformed or unauthorised request), as
// DeepFlow does.
func rcodeStatus(rc int) flowlog.ResponseStatus {
	switch rc {
	case 0:
		return flowlog.StatusSuccess
	case 2, 4, 5:
		return flowlog.StatusServerError
	}
	return flowlog.StatusClientError
}
