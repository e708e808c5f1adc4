#!/usr/bin/env bash
# Follows docs/partner-guide.md from start to finish, running its commands as a partner's
# integration engineer would paste them, against a rex started here with a security
# configuration that registers the key made in step 1. The rex team's part (registering the key,
# playing the specialist) is done as docs/security.md and the guide's "On your own machine" say.
#
#   tests/partner-guide.sh [path/to/rex]      (default: target/debug/rex; REX_BIN also works)
#
# Works in a temporary folder (removed at the end) with `fixtures` linked from the repository, so
# the checkout stays clean. Needs openssl, curl, xxd. Exit status 0 when every step did what the
# guide says; otherwise the failing step is named. Driven by tests/it/guide.rs.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
REX=${1:-${REX_BIN:-$REPO/target/debug/rex}}
REX=$(cd "$(dirname "$REX")" && pwd)/$(basename "$REX")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rex-partner-guide.XXXXXX")
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
ln -s "$REPO/fixtures" fixtures
rex() { "$REX" "$@"; }

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; [ -f server.log ] && tail -20 server.log >&2; exit 1; }
expect() { # expect TEXT FILE: the file contains the text
    grep -qF -- "$1" "$2" || { echo "--- $2:"; head -c 2000 "$2"; echo; fail "expected '$1' in $2"; }
}

# A free port for the server.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

step "What you need"
B=http://127.0.0.1:$PORT/fhir
CLIENT_ID=hospital-angeles-mx

step "1. Register your key"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out partner-key.pem
chmod 600 partner-key.pem

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
# The public point is the last 97 bytes of the DER public key: 0x04, then x and y (48 bytes each).
openssl pkey -in partner-key.pem -pubout -outform DER | tail -c 96 > point.bin
X=$(head -c 48 point.bin | b64url)
Y=$(tail -c 48 point.bin | b64url)
# kid: the RFC 7638 thumbprint, which is the kid `rex send` puts in its assertions.
KID=$(printf '{"crv":"P-384","kty":"EC","x":"%s","y":"%s"}' "$X" "$Y" | openssl dgst -sha256 -binary | b64url)
printf '{"keys":[{"crv":"P-384","kty":"EC","x":"%s","y":"%s","kid":"%s","alg":"ES384","use":"sig"}]}\n' \
  "$X" "$Y" "$KID" > partner-jwks.json
rm point.bin
cat partner-jwks.json
# "This is exactly the JWKS rex itself derives from the key" (security.md: rex keys jwks).
rex keys jwks partner-key.pem | tr -d ' \n' > rex-jwks.json
[ "$(tr -d ' \n' < partner-jwks.json)" = "$(cat rex-jwks.json)" ] || fail "the guide's JWKS differs from rex keys jwks"

# The rex team's part: the partner and a development staff identity provider (security.md).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out dev-staff.pem 2>/dev/null
rex keys jwks dev-staff.pem > dev-staff.jwks.json
# The scope list of step 1, as the configuration's `scopes` array.
SCOPES="system/Organization.cu system/Patient.cu system/Practitioner.cu system/PractitionerRole.cu
system/ServiceRequest.cru system/Condition.cu system/Observation.cu system/DiagnosticReport.rs
system/DiagnosticReport.cu system/DocumentReference.cu system/MedicationStatement.cu
system/AllergyIntolerance.cu system/Composition.cu system/Bundle.cu system/Coverage.cu
system/Binary.c system/Task.rs system/Communication.crs system/MessageHeader.cu
system/Subscription.cru"
grep -qF "system/Binary.c system/Task.rs system/Communication.crs system/MessageHeader.cu" "$REPO/docs/partner-guide.md" \
    || fail "the guide's scope list changed: update this script"
cat > security.toml <<EOF
[oidc]
issuer = "https://idp.hospital.example/realms/rex"
audience = "rex"
jwks_file = "dev-staff.jwks.json"

[[partner]]
id = "hospital-angeles-mx"
name = "Hospital Ángeles Lomas"
organization_identifier = { system = "https://rex.example/partners", value = "hospital-angeles-mx" }
jwks_file = "partner-jwks.json"
scopes = [$(for scope in $SCOPES; do printf '"%s", ' "$scope"; done)]
rate_limit_per_minute = 600
EOF
# The guide's notification endpoint is an example host that does not resolve here; rex refuses
# such endpoints unless the operator allows the host.
rex serve --listen "127.0.0.1:$PORT" --database "sqlite://$WORK/rex.db" --security security.toml \
    --routing "$REPO/config/routing.toml" --profiles "$REPO/profiles" \
    --delivery-interval 0 --escalation-interval 0 --no-ui \
    --delivery-allow-host fhir.hospital-angeles.example > server.log 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$PORT/health/ready" > /dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "rex did not start"
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/health/ready" > /dev/null || fail "rex is not ready"

step "2. Get a token"
TOKEN_URL=$(curl -s $B/.well-known/smart-configuration | sed -E 's/.*"token_endpoint":"([^"]+)".*/\1/')
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
KID=$(sed -E 's/.*"kid":"([^"]+)".*/\1/' partner-jwks.json)
NOW=$(date +%s)
HEADER=$(printf '{"alg":"ES384","typ":"JWT","kid":"%s"}' "$KID" | b64url)
CLAIMS=$(printf '{"iss":"%s","sub":"%s","aud":"%s","exp":%d,"jti":"%s"}' \
  "$CLIENT_ID" "$CLIENT_ID" "$TOKEN_URL" $((NOW + 240)) "$(openssl rand -hex 16)" | b64url)
# JWS wants the signature as r || s (48 bytes each); openssl writes it as DER, so unpack it.
SIGNATURE=$(printf '%s.%s' "$HEADER" "$CLAIMS" | openssl dgst -sha384 -sign partner-key.pem \
  | openssl asn1parse -inform DER | awk -F: '/INTEGER/ {printf "%096s", $NF}' | tr ' ' 0 | xxd -r -p | b64url)
ASSERTION="$HEADER.$CLAIMS.$SIGNATURE"

curl -s -X POST "$TOKEN_URL" -H 'Content-Type: application/x-www-form-urlencoded' \
  --data-urlencode grant_type=client_credentials \
  --data-urlencode client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  --data-urlencode client_assertion="$ASSERTION" \
  --data-urlencode scope='system/*.cruds' > token.json
cat token.json; echo
expect '"token_type":"bearer"' token.json
TOKEN=$(sed -E 's/.*"access_token":"([^"]+)".*/\1/' token.json)
curl -s "$B/Task?_count=1" -H "Authorization: Bearer $TOKEN" > tasks.json
expect '"type":"searchset"' tasks.json

step "3. Validate locally (from a folder without profiles/: they are built into rex)"
cp fixtures/valid/01-cardiology-nstemi-stat-mx.json my-referral.json
rex validate --summary my-referral.json > validate.txt || fail "rex validate: $(cat validate.txt)"
expect "valid my-referral.json" validate.txt
rex validate --summary --profile https://rex.example/fhir/StructureDefinition/rex-referral-bundle my-referral.json > validate.txt \
  || fail "rex validate --profile: $(cat validate.txt)"
if rex validate --summary --profile https://rex.example/fhir/StructureDefinition/rex-referral-bundle \
    fixtures/invalid/06-patient-missing-gender.json > invalid.txt; then fail "an invalid fixture passed"; fi
expect "INVALID" invalid.txt

step "4. Send a referral"
rex send my-referral.json --server $B --client-id $CLIENT_ID --key partner-key.pem > send.txt || fail "rex send: $(cat send.txt)"
cat send.txt
expect "accepted my-referral.json (200 OK, referral created: Task/" send.txt
expect "queue cardiology" send.txt
# An unreadable file is reported and the rest are still sent (exit status 1).
printf '{"resourceType": "Bundle",' > broken.json
if rex send broken.json my-referral.json --server $B --client-id $CLIENT_ID --key partner-key.pem > send2.txt; then
    fail "rex send with an unreadable file exited 0"
fi
expect "UNREADABLE broken.json" send2.txt
expect "referral unchanged" send2.txt
# The same with curl, the file sent as it is.
curl -s -X POST $B -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/fhir+json' \
  --data-binary @my-referral.json > response.json
expect "#unchanged" response.json
# A mistake is located on its line.
curl -s -X POST $B -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/fhir+json' \
  --data-binary @fixtures/invalid/15-json-trailing-comma.json > trailing.json
if grep -q 'line 1,' trailing.json; then fail "--data-binary kept the lines: $(cat trailing.json)"; fi
# Messages: a request and its update (the message fixtures).
rex send fixtures/messages/1-referral-request.json fixtures/messages/2-referral-update.json \
  --server $B --client-id $CLIENT_ID --key partner-key.pem > messages.txt || fail "messages: $(cat messages.txt)"
expect "accepted fixtures/messages/2-referral-update.json" messages.txt

step "5. Read the Task"
TASK=$(sed -E 's/.*"relation":"https:\/\/rex.example\/fhir\/referral-task","url":"[^"]*\/Task\/([^"]+)".*/\1/' response.json)
curl -s $B/Task/$TASK -H "Authorization: Bearer $TOKEN" > task.json
expect '"status":"requested"' task.json
expect '"HealthcareService/cardiology"' task.json

step "5. Be notified"
curl -si -X POST $B/Subscription -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/fhir+json' -d '{
  "resourceType": "Subscription", "status": "requested", "reason": "Referral updates", "criteria": "Task",
  "channel": {"type": "rest-hook", "endpoint": "https://fhir.hospital-angeles.example/rex/notify",
              "payload": "application/fhir+json", "header": ["Authorization: Bearer <a secret of yours>"]}}' > subscription.txt
expect "HTTP/1.1 201" subscription.txt
SUBSCRIPTION=$(sed -nE 's/^location: .*\/Subscription\/([^/]+)\/_history.*/\1/Ip' subscription.txt | tr -d '\r')
curl -s "$B/Subscription/$SUBSCRIPTION/\$status" -H "Authorization: Bearer $TOKEN" > status.json
expect '"query-status"' status.json
curl -s "$B/Task?_lastUpdated=gt2026-11-29T10:00:00Z&_sort=_lastUpdated&_count=100" -H "Authorization: Bearer $TOKEN" > poll.json
expect "\"id\":\"$TASK\"" poll.json

step "6. Answer a request for information (the specialist's part by the rex team)"
STAFF=$(rex token --security security.toml --key dev-staff.pem --subject dr-test --role specialist \
  --practitioner-role PractitionerRole/dr-test --queue cardiology)
curl -s -X POST $B/Task/$TASK/\$claim -H "Authorization: Bearer $STAFF" -H 'Content-Type: application/fhir+json' \
  -d '{"resourceType":"Parameters","parameter":[{"name":"owner","valueReference":{"reference":"PractitionerRole/dr-test"}}]}' > claim.json
expect '"status":"in-progress"' claim.json
curl -s -X POST $B/Task/$TASK/\$request-information -H "Authorization: Bearer $STAFF" -H 'Content-Type: application/fhir+json' \
  -d '{"resourceType":"Parameters","parameter":[{"name":"message","valueString":"Please send the latest echocardiogram"}]}' > asked.json
expect '"status":"on-hold"' asked.json

curl -s "$B/Communication?category=information-request&_sort=-_lastUpdated" -H "Authorization: Bearer $TOKEN" > requests.json
expect "Please send the latest echocardiogram" requests.json
REQUEST=$(curl -s "$B/Communication?category=information-request&_sort=-_lastUpdated&_count=1" \
  -H "Authorization: Bearer $TOKEN" | sed -E 's/.*"fullUrl":"[^"]*\/Communication\/([^"]+)".*/\1/')
PDF=$(openssl base64 -A < fixtures/messages/echo-report.pdf)     # your document, base64
curl -s -X POST $B/Communication -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/fhir+json' -d '{
  "resourceType": "Communication", "status": "completed",
  "inResponseTo": [{"reference": "Communication/'$REQUEST'"}],
  "payload": [
    {"contentString": "Echocardiogram of 27 November attached."},
    {"contentAttachment": {"contentType": "application/pdf", "title": "Echo report", "data": "'$PDF'"}}]}' > answer.json
expect '"resourceType":"Communication"' answer.json
curl -s $B/Task/$TASK -H "Authorization: Bearer $TOKEN" > task.json
expect '"status":"in-progress"' task.json
# Asked again, answered by a referral-communication message: it resumes the Task too.
curl -s -X POST $B/Task/$TASK/\$request-information -H "Authorization: Bearer $STAFF" -H 'Content-Type: application/fhir+json' \
  -d '{"resourceType":"Parameters","parameter":[{"name":"message","valueString":"And the troponin trend"}]}' > asked.json
expect '"status":"on-hold"' asked.json
REQUEST=$(curl -s "$B/Communication?category=information-request&_sort=-_lastUpdated&_count=1" \
  -H "Authorization: Bearer $TOKEN" | sed -E 's/.*"fullUrl":"[^"]*\/Communication\/([^"]+)".*/\1/')
sed "s/REQUEST-ID/$REQUEST/" fixtures/messages/3-referral-communication.json > answer.json
rex send answer.json --server $B --client-id $CLIENT_ID --key partner-key.pem > answered.txt || fail "answer: $(cat answered.txt)"
curl -s $B/Task/$TASK -H "Authorization: Bearer $TOKEN" > task.json
expect '"status":"in-progress"' task.json

step "7. Read the opinion (completed by the specialist)"
REPORT=$(curl -s -X POST $B/DiagnosticReport -H "Authorization: Bearer $STAFF" -H 'Content-Type: application/fhir+json' \
  -d '{"resourceType":"DiagnosticReport","status":"final","code":{"text":"Second opinion"},"conclusion":"Early invasive strategy within 24 hours."}' \
  | sed -E 's/.*"id":"([^"]+)".*/\1/')
curl -s -X POST $B/Task/$TASK/\$complete -H "Authorization: Bearer $STAFF" -H 'Content-Type: application/fhir+json' \
  -d '{"resourceType":"Parameters","parameter":[{"name":"opinion","valueReference":{"reference":"DiagnosticReport/'$REPORT'"}}]}' > completed.json
expect '"status":"completed"' completed.json
OPINION=$(curl -s $B/Task/$TASK -H "Authorization: Bearer $TOKEN" | sed -E 's/.*"output":\[\{[^]]*"reference":"([^"]+)".*/\1/')
curl -s $B/$OPINION -H "Authorization: Bearer $TOKEN" > opinion.json
expect "Early invasive strategy within 24 hours." opinion.json

step "4. Withdrawing a referral (the message referral)"
rex send fixtures/messages/4-referral-revoke.json --server $B --client-id $CLIENT_ID --key partner-key.pem > revoke.txt \
  || fail "revoke: $(cat revoke.txt)"
expect "revoked fixtures/messages/4-referral-revoke.json" revoke.txt

step "8. Read your scorecard"
curl -s "$B/\$partner-scorecard" -H "Authorization: Bearer $TOKEN" > scorecard.json
expect '"submissions"' scorecard.json
curl -s "$B/\$partner-scorecard?period=2026-11-01/&_format=text/csv" -H "Authorization: Bearer $TOKEN" > scorecard.csv
expect "submissions" scorecard.csv
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
rex report scorecard --partner $CLIENT_ID --database "sqlite://$WORK/rex.db" > report.txt
expect "Conformance scorecard of hospital-angeles-mx" report.txt
if rex report scorecard --partner nobody --database "sqlite://$WORK/rex.db" 2> nobody.txt; then
    fail "a scorecard of an unknown partner exited 0"
fi
expect "no partner 'nobody'" nobody.txt

printf '\nThe partner guide works from start to finish.\n'
