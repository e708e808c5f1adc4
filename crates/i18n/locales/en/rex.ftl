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

## access

staff-only-operation = { $operation } is done by hospital staff; partners cannot run it
metrics-admins-only = Metrics are for admins

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
transition-action = { $action }
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
