package mongodb

import "github.com/sightline-io/sightline/flowlog"

// errorStatus classifies a failed command by its error code. The rule:
// codes that blame the request — bad values or syntax, unknown commands,
// missing or already existing namespaces, indexes, users and roles,
// authentication and authorisation, document validation, duplicate keys,
// limits the client chose (maxTimeMS) — are client errors; everything else
// (network, replication, shutdown, write conflicts, internal and unknown
// codes) is a server error.
func errorStatus(code int32) flowlog.ResponseStatus {
	switch code {
	case 2, // BadValue
		4,     // NoSuchKey
		9,     // FailedToParse
		11,    // UserNotFound
		13,    // Unauthorized
		14,    // TypeMismatch
		15,    // Overflow
		16,    // InvalidLength
		18,    // AuthenticationFailed
		20,    // IllegalOperation
		22,    // InvalidBSON
		26,    // NamespaceNotFound
		27,    // IndexNotFound
		28,    // PathNotViable
		30,    // InvalidPath
		31,    // RoleNotFound
		40,    // ConflictingUpdateOperators
		43,    // CursorNotFound
		48,    // NamespaceExists
		50,    // MaxTimeMSExpired
		52,    // DollarPrefixedFieldName
		53,    // InvalidIdField
		55,    // InvalidDBRef
		56,    // EmptyFieldName
		57,    // DottedFieldName
		59,    // CommandNotFound
		61,    // ShardKeyNotFound
		66,    // ImmutableField
		67,    // CannotCreateIndex
		68,    // IndexAlreadyExists
		72,    // InvalidOptions
		73,    // InvalidNamespace
		85,    // IndexOptionsConflict
		86,    // IndexKeySpecsConflict
		115,   // CommandNotSupported
		121,   // DocumentValidationFailure
		166,   // CommandNotSupportedOnView
		167,   // OptionNotSupportedOnView
		168,   // InvalidPipelineOperator
		171,   // CannotIndexParallelArrays
		197,   // InvalidIndexSpecificationOption
		206,   // NoSuchSession
		251,   // NoSuchTransaction
		11000, // DuplicateKey
		11001, // DuplicateKey (legacy)
		12582, // DuplicateKey (legacy mongos)
		17280: // KeyTooLong
		return flowlog.StatusClientError
	}
	return flowlog.StatusServerError
}
