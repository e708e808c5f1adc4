# rex: partner-facing texts, English (the reference: every other language has the same ids and variables).
# Variables ({ $name }) are filled in by rex; keep them, reorder them as the language needs.

## general

internal-error = Internal server error; the request was not applied
resource-not-known = { $reference } is not known
version-conflict = Version conflict: If-Match expected version { $expected }, the current version is { $current }
already-exists = { $what } already exists
concurrent-change = A concurrent change conflicted with this request; retry it
no-smart-configuration = This server runs without authentication (--dev): no SMART configuration
rate-limited = Rate limit of { $limit } requests per minute reached; retry after { $wait } s
no-endpoint = No FHIR endpoint at this URL; the FHIR base is /fhir
method-not-allowed = This HTTP method is not allowed on this URL
not-found = Not found
malformed-request = The request is malformed ({ $reason })
resource-deleted = { $reference } was deleted
version-not-known = { $reference } has no version { $version }
version-deleted = Version { $version } of { $reference } records its deletion

## limits

xml-body-too-large = FHIR XML request bodies are limited to { $limit } bytes (the large-body size); send larger content as FHIR JSON
content-too-large = The content is larger than the limit of { $limit } bytes
large-bodies-busy = rex is already working on as many request bodies over { $threshold } bytes as it takes at once; retry after { $wait } s
body-too-large = The request body is larger than the limit of { $limit } bytes
json-too-deep = The JSON body nests deeper than the limit of { $limit } levels
xml-too-deep = The XML body nests deeper than the limit of { $limit } levels (line { $line }, column { $column })
xml-too-many-attributes = An XML tag carries more than { $attributes } attributes or { $namespaces } namespace declarations (line { $line }, column { $column })
array-too-long = '{ $key }' has { $count } items; rex's limit is { $limit } in one array
array-limit = rex's limit is { $limit } items in one array
too-many-index-values = The { $resource_type } yields more than { $limit } search index values, rex's limit (reached at the search parameter '{ $code }')

## body

upload-interrupted = The upload was interrupted
unsupported-content-type = Unsupported Content-Type '{ $content_type }': send application/fhir+json or application/fhir+xml
unsupported-format = rex answers in FHIR JSON or FHIR XML; _format '{ $format }' is not supported
takes-fhir-resource = This interaction takes a FHIR resource (application/fhir+json or application/fhir+xml)
patch-content-type = PATCH takes application/json-patch+json

## conditional

if-match-not-etag = If-Match must be a version ETag such as W/"3"
if-none-exist-not-text = If-None-Exist is not valid text
conditional-update-needs-search = A conditional update needs search parameters
conditional-delete-needs-search = DELETE on a resource type needs search parameters (conditional delete)
conditional-needs-search = A conditional request needs search parameters
condition-multiple-matches = The condition '{ $query }' matches more than one { $resource_type }
if-none-exist-multiple-matches = If-None-Exist '{ $query }' matches more than one { $resource_type }
id-differs-from-match = The resource id differs from the resource the condition matched
condition-no-match = No { $resource_type } matches the condition
if-none-exist-entry-multiple-matches = ifNoneExist '{ $query }' matches more than one { $resource_type }

## access

staff-only-operation = { $operation } is done by hospital staff; partners cannot run it
metrics-admins-only = Metrics are for admins
auth-no-token = no bearer token (Authorization: Bearer <token>)
auth-invalid-token = invalid token: { $reason }
auth-scope = the token does not allow { $interaction } on { $resource_type }
auth-certificate-mismatch = client certificate mismatch: { $reason }

## subscriptions

endpoint-refused = channel.endpoint is refused: { $reason }
subscription-rest-hook-only = rex delivers notifications by rest-hook only
subscription-criteria-invalid = The criteria search is not valid: { $reasons }
subscription-header-refused = channel.header must be 'Name: value' headers; Host, Content-Length, Content-Type and hop-by-hop headers (Connection, Transfer-Encoding...) are rex's to set
subscription-json-only = rex sends notifications as application/fhir+json
subscription-payload-content = payload content '{ $content }' is not one of empty, id-only, full-resource
subscription-criteria-tasks = rex notifies about referral Tasks: criteria must be 'Task', 'Task?<search>' or { $topic }

## outcomes

outcome-deleted = Deleted
outcome-created = Created
outcome-existing = A matching resource exists; nothing was created
outcome-updated = Updated

## search

search-too-many-parameters = The search has more than { $limit } parameters (criteria, _include and _revinclude), rex's limit
search-too-many-values = The search has more than { $limit } values in all, rex's limit
search-unknown-include-modifier = Unknown modifier ':{ $modifier }' on { $code }
search-summary-unsupported = _summary={ $value } is not supported (only count and false)
search-total-invalid = _total must be none, estimate or accurate, not '{ $value }'
search-chaining-unsupported = Chained search parameters are not supported
search-has-unsupported = Reverse chaining (_has) is not supported
search-unknown-parameter = Unknown or unsupported search parameter '{ $code }' for { $resource_type }
search-too-many-sort-keys = _sort has more than { $limit } keys, rex's limit
search-sort-unsupported = Sorting by '{ $code }' is not supported (use _lastUpdated, _id, a date or a string parameter)
search-sort-repeated = _sort names '{ $code }' more than once
search-include-form = '{ $value }' is not of the form Type:param[:Target]
search-include-unknown-type = Unknown resource type '{ $resource_type }' in '{ $value }'
search-include-not-reference = '{ $param }' is not a reference parameter of { $resource_type }
search-missing-value = :missing takes true or false, not '{ $value }'
search-no-value = Search parameter '{ $code }' has no value
search-parameter-too-many-values = Search parameter '{ $code }' has { $count } values; rex's limit is { $limit } per parameter
search-modifier-unsupported = Modifier ':{ $modifier }' is not supported on '{ $code }'
search-parameter-unsupported = Search parameter '{ $code }' is not supported
search-date-invalid = '{ $value }' is not a valid FHIR date, dateTime or instant
search-not-a-number = '{ $value }' is not a number
search-not-finite = '{ $value }' is not a finite number
search-not-count = { $name } must be a non-negative integer, not '{ $value }'
search-timed-out = The search took longer than rex's limit of { $limit } ms and was stopped; narrow it (more selective criteria, _total=none, a smaller _count)
search-post-form = POST _search takes application/x-www-form-urlencoded

## parsing

json-not-object = The body must be a JSON object holding a FHIR resource
json-invalid = The body is not valid JSON: { $error }
json-duplicate-key = The key '{ $key }' appears more than once in the same JSON object
xml-not-fhir = The body is not valid FHIR XML: { $error }
xml-not-resource = The body must hold a FHIR resource
xml-not-utf8 = FHIR XML bodies must be encoded in UTF-8 (line { $line }, column { $column })
xml-doctype = DOCTYPE declarations are not accepted: FHIR XML defines no entities or DTDs (line { $line }, column { $column })
xml-processing-instruction = Processing instructions are not accepted in FHIR XML (line { $line }, column { $column })
xml-cdata = CDATA sections are not accepted in FHIR XML (line { $line }, column { $column })
xml-malformed-attribute = Malformed attribute: { $error } (line { $line }, column { $column })
xml-narrative-namespace = The narrative must be written <div xmlns="{ $namespace }">...</div> (line { $line }, column { $column })
xml-undefined-entity = The entity reference '{ $entity }' is not defined (FHIR XML has no DTD) (line { $line }, column { $column })
xml-narrative-not-utf8 = The narrative is not valid UTF-8
xml-narrative-misplaced = A narrative div is misplaced
xml-not-well-formed = The body is not well-formed XML: { $error } (line { $line }, column { $column })

## structure

resource-not-object = A resource must be a JSON object
unknown-resource-type = Unknown resource type '{ $resource_type }'
no-resource-type = The resource has no resourceType
empty-object = Empty objects are not allowed
unknown-element = Unknown element '{ $key }'
empty-array = Empty arrays are not allowed
must-be-array = '{ $key }' repeats, so it must be a JSON array
must-not-be-array = '{ $key }' has at most one value, so it must not be an array
missing-required-element = Missing required element '{ $name }'
null-not-allowed = null is not allowed
expected-object = Expected a JSON object
malformed-primitive-extension = Malformed primitive extension
primitive-not-string = A { $type_name } value must be a non-empty JSON string, not { $value }
primitive-not-number = A { $type_name } value must be a JSON number, not { $value }
primitive-not-boolean = A { $type_name } value must be a JSON boolean, not { $value }

## workflow

transition-refused = a referral Task in status '{ $from }' cannot { $action }; allowed here: { $allowed }
transition-become = become '{ $status }'
transition-finished = nothing (the referral is finished)

## consent

consent-other-patient = is not about the referral's patient ({ $patient })
consent-not-active = is '{ $status }', not 'active'
consent-scope = is not { $scope }
consent-category = has no { $category } (information disclosure)
consent-denies = denies instead of permitting
consent-no-start = has no start (when the permission begins)
consent-future = starts in the future
consent-ended = has ended
consent-cannot-carry = This Consent cannot carry the referral: { $element } { $problem }
consent-required = This partner's referrals must carry an active Consent for the patient (profile rex-referral-consent): scope { $scope }, category { $category }, patient the referral's, provision.period covering now

## referral

referral-one-service-request = A referral Bundle carries exactly one referral ServiceRequest
referral-identifier = A referral needs a business identifier with system and value (ServiceRequest.identifier)
referral-partner-unknown = Cannot tell which partner sends this referral: the requester must be (or belong to) an Organization with an identifier in { $system }
referral-unknown-priority = Unknown priority '{ $code }'
referral-patient = A referral names its patient (ServiceRequest.subject.reference)
referral-other-partner = This referral is sent on behalf of partner '{ $named }' (the requester Organization's identifier in { $system }), but the access token belongs to partner '{ $partner }'

## consults

scheduling-hospital-only = { $resource_type }s are the hospital's: partners find and book times with Appointment/$find and $book
consult-operations-only = A telehealth consult changes only through Task/$request-consult, Appointment/$book and $cancel
consult-none = No telehealth consult is proposed or booked for { $referral }; the specialist asks for one with Task/$request-consult
consult-claim-first = A consult is with the specialist who claimed the referral: claim it first
consult-already-open = { $appointment } is already the open consult of this referral; cancel it first
consult-interpreter-language = An interpreter needs the patient's language: give 'language' (the referral names none)
book-not-appointment = appointment-resource must be an Appointment
book-no-referral = The Appointment must name its referral in basedOn
book-slot-reference = Each slot must be a distinct Slot reference
book-slot-count = A consult books the specialist's slot and at most one interpreter slot
consult-cancelled-meanwhile = The consult was cancelled meanwhile
slot-interpreter-language = { $slot } is with an interpreter who does not speak { $language }
slot-not-for-consult = { $slot } is not for this consult: book a slot of its specialist
slot-not-for-consult-interpreted = { $slot } is not for this consult: book a slot of its specialist and one of an interpreter
book-needs-specialist-slot = The booking needs a slot of the consult's specialist
book-needs-interpreter = The patient needs an interpreter: book an interpreter slot for { $language }
slot-too-short = { $slot } does not hold a { $minutes }-minute consult inside the requested period
slot-in-past = { $slot } is in the past
slot-not-covering = { $slot } does not cover the consult's time
slot-taken = { $slot } is no longer free; ask Appointment/$find again
consult-referral-closed = The referral { $referral } is no longer being reviewed; its consult cannot be booked
not-a-consult = { $appointment } is not a telehealth consult
consult-not-cancellable = { $appointment } is { $status }; only a proposed or booked consult can be cancelled
find-referral-reference = referral must be a ServiceRequest reference, not '{ $referral }'
find-duration = minutesDuration must be between 10 and 240 minutes
find-window = latest must leave room for the consult after earliest

## writes

wrong-resource-type = The resource is a { $found }, but the request addresses { $resource_type }
invalid-id = Resource.id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'
id-mismatch = The resource id ({ $body_id }) must equal the id in the URL ({ $id })
id-missing = The resource id (missing) must equal the id in the URL ({ $id })

## references

reference-unknown = The reference '{ $reference }' names no resource on this server
bundle-reference-unknown = The reference '{ $reference }' names no entry of this Bundle
conditional-reference-none = The conditional reference '{ $reference }' matches nothing
conditional-reference-many = The conditional reference '{ $reference }' matches more than one resource

## patch

patch-invalid = The body is not a JSON Patch document: { $error }
patch-failed = The patch cannot be applied: { $error }
patch-changes-id = A patch must not change the resource id
patch-entry-binary = A PATCH entry must carry a Binary with contentType application/json-patch+json
patch-entry-base64 = Binary.data is not valid base64
patch-entry-not-patch = Binary.data is not a JSON Patch document

## messages

message-unknown-event = Unknown message event: rex processes { $system } codes referral-request, referral-update, referral-revoke and referral-communication
message-media = $process-message takes a FHIR message Bundle (JSON or XML)
message-not-message-bundle = $process-message takes a Bundle of type message
message-header-first = The first entry of a message Bundle must be its MessageHeader
message-needs-referral = This event needs a referral: a ServiceRequest with a referral or second-opinion category
message-no-referral-to-revoke = No referral { $identifier } from this partner to revoke

## bundles

bundle-media = POST to the base takes a FHIR Bundle (JSON or XML)
bundle-not-bundle = POST to the base takes a Bundle of type transaction or batch
bundle-wrong-type = POST to the base takes a transaction or batch Bundle, not type '{ $bundle_type }'
bundle-empty = A { $bundle_type } Bundle needs at least one entry
bundle-entry-array = Bundle.entry must be an array
bundle-duplicate-full-url = fullUrl '{ $full_url }' is also used by Bundle.entry[{ $first }]
bundle-entry-request = Each entry needs a request
bundle-entry-method = request.method must be GET, HEAD, POST, PUT, PATCH or DELETE
bundle-entry-url = request.url is required
bundle-entry-resource = POST, PUT and PATCH entries need a resource
bundle-entry-if-match = request.ifMatch must be a version ETag
bundle-entry-url-form = request.url '{ $url }' must be Type/id or Type?search
bundle-post-url = A POST entry's request.url must be the resource type, not '{ $url }'

## operations

parameter-not-integer = { $name } must be a valueInteger
parameter-not-boolean = { $name } must be a valueBoolean
parameter-not-instant = { $name } must be a date and time with an offset, like 2027-03-15T09:00:00-07:00
parameter-required = The parameter '{ $name }' is required
operation-media = Operations take a FHIR Parameters resource (JSON or XML)
operation-not-parameters = Operations take a Parameters resource
operation-unknown = Unknown operation '{ $operation }'

## history

history-invalid-value = Invalid value '{ $value }' for { $key }
history-unsupported-parameter = History does not support the parameter '{ $key }'

## validation

validate-media = $validate takes a FHIR resource or Parameters (JSON or XML)
validate-no-resource = $validate needs a resource: the body, or a Parameters 'resource'
validate-wrong-type = $validate on { $expected } was given a { $found }
validate-no-issues = No issues found

## scorecard

scorecard-parameter = $partner-scorecard takes partner, period and _format, not '{ $parameter }'
scorecard-date = '{ $value }' is not a FHIR date (2026, 2026-11, 2026-11-29)
scorecard-period-reversed = the period '{ $period }' ends before it starts
scorecard-own-only = A partner reads only its own scorecard
scorecard-name-partner = Name the partner: partner=ID
scorecard-unknown-partner = No partner '{ $partner }' is configured
scorecard-staff-roles = Partner scorecards are for coordinators and admins

## notifications

consult-description = Telehealth consult for a second opinion
consult-reminder = Reminder: the telehealth consult for your referral starts at { $start }.
subscription-configured-reason = Referral Task changes, from the partner's notification_endpoint
subscription-handshake-failed = The handshake failed: { $reason }

## validation rules (the validator's English text stays in details.text)

rule-constraint = Constraint { $key } failed: { $human }
rule-constraint-not-evaluated = Constraint { $key } could not be evaluated
rule-cardinality = { $element } occurs { $found } times; allowed are { $min } to { $max }
rule-slice = The slice '{ $name }' of { $element } holds { $found } items; allowed are { $min } to { $max }
rule-closed-slicing = This item matches no slice of the closed slicing of { $profile }
