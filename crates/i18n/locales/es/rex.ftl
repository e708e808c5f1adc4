# rex: partner-facing texts, Spanish. Same ids and variables as en/rex.ftl (the reference).
# Variables ({ $name }) are filled in by rex; keep them, reorder them as the language needs.

## general

internal-error = Error interno del servidor; la solicitud no se aplicó
resource-not-known = No se conoce { $reference }
version-conflict = Conflicto de versiones: If-Match esperaba la versión { $expected }, la versión actual es { $current }
already-exists = { $what } ya existe
concurrent-change = Un cambio simultáneo entró en conflicto con esta solicitud; vuelva a intentarla
no-smart-configuration = Este servidor funciona sin autenticación (--dev): no hay configuración SMART
rate-limited = Se alcanzó el límite de { $limit } solicitudes por minuto; vuelva a intentarlo dentro de { $wait } s

## limits

xml-body-too-large = Los cuerpos de solicitud en FHIR XML están limitados a { $limit } bytes (el tamaño de cuerpo grande); envíe contenido mayor como FHIR JSON

## body

upload-interrupted = La carga se interrumpió

## limits

content-too-large = El contenido supera el límite de { $limit } bytes

## body

unsupported-content-type = Content-Type '{ $content_type }' no admitido: envíe application/fhir+json o application/fhir+xml
unsupported-format = rex responde en FHIR JSON o FHIR XML; _format '{ $format }' no es compatible

## limits

large-bodies-busy = rex ya está procesando tantos cuerpos de solicitud de más de { $threshold } bytes como admite a la vez; vuelva a intentarlo dentro de { $wait } s
body-too-large = El cuerpo de la solicitud supera el límite de { $limit } bytes

## conditional

if-match-not-etag = If-Match debe ser un ETag de versión como W/"3"

## access

staff-only-operation = { $operation } lo realiza el personal del hospital; los socios no pueden ejecutarla
metrics-admins-only = Las métricas son solo para administradores

## general

no-endpoint = No hay ningún endpoint FHIR en esta URL; la base FHIR es /fhir
method-not-allowed = Este método HTTP no está permitido en esta URL
not-found = No encontrado
malformed-request = La solicitud está mal formada ({ $reason })

## subscriptions

endpoint-refused = Se rechaza channel.endpoint: { $reason }
subscription-rest-hook-only = rex entrega las notificaciones solo por rest-hook
subscription-criteria-invalid = La búsqueda de criteria no es válida: { $reasons }
subscription-header-refused = channel.header debe contener cabeceras 'Nombre: valor'; Host, Content-Length, Content-Type y las cabeceras hop-by-hop (Connection, Transfer-Encoding...) las fija rex
subscription-json-only = rex envía las notificaciones como application/fhir+json
subscription-payload-content = el contenido de payload '{ $content }' no es empty, id-only ni full-resource
subscription-criteria-tasks = rex notifica sobre las Task de derivación: criteria debe ser 'Task', 'Task?<búsqueda>' o { $topic }

## general

resource-deleted = { $reference } fue eliminado

## body

takes-fhir-resource = Esta interacción recibe un recurso FHIR (application/fhir+json o application/fhir+xml)

## outcomes

outcome-deleted = Eliminado
outcome-created = Creado
outcome-existing = Ya existe un recurso coincidente; no se creó nada
outcome-updated = Actualizado

## conditional

if-none-exist-not-text = If-None-Exist no es texto válido
conditional-update-needs-search = Una actualización condicional necesita parámetros de búsqueda
conditional-delete-needs-search = DELETE sobre un tipo de recurso necesita parámetros de búsqueda (borrado condicional)

## body

patch-content-type = PATCH recibe application/json-patch+json

## search

search-too-many-parameters = La búsqueda tiene más de { $limit } parámetros (criterios, _include y _revinclude), el límite de rex
search-too-many-values = La búsqueda tiene más de { $limit } valores en total, el límite de rex
search-unknown-include-modifier = Modificador ':{ $modifier }' desconocido en { $code }
search-summary-unsupported = _summary={ $value } no es compatible (solo count y false)
search-total-invalid = _total debe ser none, estimate o accurate, no '{ $value }'
search-chaining-unsupported = Los parámetros de búsqueda encadenados no son compatibles
search-has-unsupported = El encadenamiento inverso (_has) no es compatible
search-unknown-parameter = Parámetro de búsqueda '{ $code }' desconocido o no admitido para { $resource_type }
search-too-many-sort-keys = _sort tiene más de { $limit } claves, el límite de rex
search-sort-unsupported = No se puede ordenar por '{ $code }' (use _lastUpdated, _id, un parámetro de fecha o de texto)
search-sort-repeated = _sort nombra '{ $code }' más de una vez
search-include-form = '{ $value }' no tiene la forma Tipo:parámetro[:Destino]
search-include-unknown-type = Tipo de recurso '{ $resource_type }' desconocido en '{ $value }'
search-include-not-reference = '{ $param }' no es un parámetro de referencia de { $resource_type }
search-missing-value = :missing admite true o false, no '{ $value }'
search-no-value = El parámetro de búsqueda '{ $code }' no tiene valor
search-parameter-too-many-values = El parámetro de búsqueda '{ $code }' tiene { $count } valores; el límite de rex es { $limit } por parámetro
search-modifier-unsupported = El modificador ':{ $modifier }' no es compatible con '{ $code }'
search-parameter-unsupported = El parámetro de búsqueda '{ $code }' no es compatible
search-date-invalid = '{ $value }' no es un date, dateTime ni instant FHIR válido
search-not-a-number = '{ $value }' no es un número
search-not-finite = '{ $value }' no es un número finito
search-not-count = { $name } debe ser un entero no negativo, no '{ $value }'

## parsing

json-not-object = El cuerpo debe ser un objeto JSON que contenga un recurso FHIR
json-invalid = El cuerpo no es JSON válido: { $error }

## limits

json-too-deep = El cuerpo JSON supera el límite de anidamiento de { $limit } niveles

## parsing

json-duplicate-key = La clave '{ $key }' aparece más de una vez en el mismo objeto JSON
xml-not-fhir = El cuerpo no es FHIR XML válido: { $error }
xml-not-resource = El cuerpo debe contener un recurso FHIR

## limits

xml-too-deep = El cuerpo XML supera el límite de anidamiento de { $limit } niveles (línea { $line }, columna { $column })

## parsing

xml-not-utf8 = Los cuerpos FHIR XML deben estar codificados en UTF-8 (línea { $line }, columna { $column })
xml-doctype = No se aceptan declaraciones DOCTYPE: FHIR XML no define entidades ni DTD (línea { $line }, columna { $column })
xml-processing-instruction = No se aceptan instrucciones de procesamiento en FHIR XML (línea { $line }, columna { $column })
xml-cdata = No se aceptan secciones CDATA en FHIR XML (línea { $line }, columna { $column })
xml-malformed-attribute = Atributo mal formado: { $error } (línea { $line }, columna { $column })

## limits

xml-too-many-attributes = Una etiqueta XML lleva más de { $attributes } atributos o { $namespaces } declaraciones de espacio de nombres (línea { $line }, columna { $column })

## parsing

xml-narrative-namespace = La narrativa debe escribirse <div xmlns="{ $namespace }">...</div> (línea { $line }, columna { $column })
xml-undefined-entity = La referencia de entidad '{ $entity }' no está definida (FHIR XML no tiene DTD) (línea { $line }, columna { $column })
xml-narrative-not-utf8 = La narrativa no es UTF-8 válido
xml-narrative-misplaced = Un div de narrativa está mal colocado
xml-not-well-formed = El cuerpo no es XML bien formado: { $error } (línea { $line }, columna { $column })

## structure

resource-not-object = Un recurso debe ser un objeto JSON
unknown-resource-type = Tipo de recurso '{ $resource_type }' desconocido
no-resource-type = El recurso no tiene resourceType
empty-object = No se permiten objetos vacíos
unknown-element = Elemento '{ $key }' desconocido

## limits

array-too-long = '{ $key }' tiene { $count } elementos; el límite de rex es { $limit } en un arreglo

## structure

empty-array = No se permiten arreglos vacíos
must-be-array = '{ $key }' se repite, por lo que debe ser un arreglo JSON
must-not-be-array = '{ $key }' tiene como máximo un valor, por lo que no debe ser un arreglo
missing-required-element = Falta el elemento obligatorio '{ $name }'
null-not-allowed = null no está permitido
expected-object = Se esperaba un objeto JSON

## limits

array-limit = El límite de rex es { $limit } elementos en un arreglo

## structure

malformed-primitive-extension = Extensión de primitivo mal formada
primitive-not-string = Un valor { $type_name } debe ser una cadena JSON no vacía, no { $value }
primitive-not-number = Un valor { $type_name } debe ser un número JSON, no { $value }
primitive-not-boolean = Un valor { $type_name } debe ser un booleano JSON, no { $value }

## search

search-timed-out = La búsqueda tardó más que el límite de rex de { $limit } ms y se detuvo; acótela (criterios más selectivos, _total=none, un _count menor)

## limits

too-many-index-values = El recurso { $resource_type } genera más de { $limit } valores de índice de búsqueda, el límite de rex (alcanzado en el parámetro de búsqueda '{ $code }')

## workflow

transition-refused = una Task de derivación en estado '{ $from }' no puede { $action }; permitido aquí: { $allowed }
transition-become = pasar a '{ $status }'
transition-finished = nada (la derivación ha terminado)

## consent

consent-other-patient = no corresponde al paciente de la derivación ({ $patient })
consent-not-active = es '{ $status }', no 'active'
consent-scope = no es { $scope }
consent-category = no tiene { $category } (divulgación de información)
consent-denies = deniega en lugar de permitir
consent-no-start = no tiene inicio (cuándo comienza el permiso)
consent-future = comienza en el futuro
consent-ended = ha finalizado
consent-cannot-carry = Este Consent no puede amparar la derivación: { $element } { $problem }
consent-required = Las derivaciones de este socio deben llevar un Consent activo del paciente (perfil rex-referral-consent): scope { $scope }, category { $category }, el paciente de la derivación y provision.period vigente ahora

## referral

referral-one-service-request = Un Bundle de derivación lleva exactamente un ServiceRequest de derivación
referral-identifier = Una derivación necesita un identificador de negocio con system y value (ServiceRequest.identifier)
referral-partner-unknown = No se puede determinar qué socio envía esta derivación: el requester debe ser (o pertenecer a) una Organization con un identificador en { $system }
referral-unknown-priority = Prioridad '{ $code }' desconocida
referral-patient = Una derivación indica su paciente (ServiceRequest.subject.reference)
referral-other-partner = Esta derivación se envía en nombre del socio '{ $named }' (el identificador de la Organization solicitante en { $system }), pero el token de acceso pertenece al socio '{ $partner }'

## consults

scheduling-hospital-only = Los recursos { $resource_type } son del hospital: los socios buscan y reservan horarios con Appointment/$find y $book
consult-operations-only = Una teleconsulta solo cambia mediante Task/$request-consult, Appointment/$book y $cancel
consult-none = No hay ninguna teleconsulta propuesta ni reservada para { $referral }; el especialista la solicita con Task/$request-consult
consult-claim-first = Una consulta es con el especialista que asumió la derivación: asúmala primero
consult-already-open = { $appointment } ya es la consulta abierta de esta derivación; cancélela primero
consult-interpreter-language = Un intérprete necesita el idioma del paciente: indique 'language' (la derivación no indica ninguno)
book-not-appointment = appointment-resource debe ser un Appointment
book-no-referral = El Appointment debe indicar su derivación en basedOn
book-slot-reference = Cada slot debe ser una referencia a un Slot distinto
book-slot-count = Una consulta reserva el slot del especialista y como máximo un slot de intérprete
consult-cancelled-meanwhile = La consulta se canceló mientras tanto
slot-interpreter-language = { $slot } es con un intérprete que no habla { $language }
slot-not-for-consult = { $slot } no es para esta consulta: reserve un slot de su especialista
slot-not-for-consult-interpreted = { $slot } no es para esta consulta: reserve un slot de su especialista y uno de un intérprete
book-needs-specialist-slot = La reserva necesita un slot del especialista de la consulta
book-needs-interpreter = El paciente necesita un intérprete: reserve un slot de intérprete para { $language }
slot-too-short = { $slot } no da cabida a una consulta de { $minutes } minutos dentro del período solicitado
slot-in-past = { $slot } está en el pasado
slot-not-covering = { $slot } no cubre el horario de la consulta
slot-taken = { $slot } ya no está libre; vuelva a consultar Appointment/$find
consult-referral-closed = La derivación { $referral } ya no está en revisión; no se puede reservar su consulta
not-a-consult = { $appointment } no es una teleconsulta
consult-not-cancellable = { $appointment } está en estado { $status }; solo se puede cancelar una consulta propuesta o reservada

## writes

wrong-resource-type = El recurso es un { $found }, pero la solicitud se dirige a { $resource_type }
invalid-id = Resource.id debe tener de 1 a 64 caracteres entre A-Z, a-z, 0-9, '-' y '.'

## conditional

conditional-needs-search = Una solicitud condicional necesita parámetros de búsqueda
condition-multiple-matches = La condición '{ $query }' coincide con más de un { $resource_type }
if-none-exist-multiple-matches = If-None-Exist '{ $query }' coincide con más de un { $resource_type }

## writes

id-mismatch = El id del recurso ({ $body_id }) debe ser igual al id de la URL ({ $id })
id-missing = El id del recurso (ausente) debe ser igual al id de la URL ({ $id })

## conditional

id-differs-from-match = El id del recurso difiere del recurso que coincidió con la condición

## references

reference-unknown = La referencia '{ $reference }' no designa ningún recurso de este servidor

## conditional

condition-no-match = Ningún { $resource_type } coincide con la condición

## patch

patch-invalid = El cuerpo no es un documento JSON Patch: { $error }
patch-failed = No se puede aplicar el parche: { $error }
patch-changes-id = Un parche no debe cambiar el id del recurso
patch-entry-binary = Una entrada PATCH debe llevar un Binary con contentType application/json-patch+json
patch-entry-base64 = Binary.data no es base64 válido
patch-entry-not-patch = Binary.data no es un documento JSON Patch

## messages

message-unknown-event = Evento de mensaje desconocido: rex procesa los códigos de { $system } referral-request, referral-update, referral-revoke y referral-communication
message-media = $process-message recibe un Bundle de mensaje FHIR (JSON o XML)
message-not-message-bundle = $process-message recibe un Bundle de tipo message
message-header-first = La primera entrada de un Bundle de mensaje debe ser su MessageHeader
message-needs-referral = Este evento necesita una derivación: un ServiceRequest con categoría de derivación o de segunda opinión
message-no-referral-to-revoke = No hay ninguna derivación { $identifier } de este socio que revocar

## bundles

bundle-media = POST a la base recibe un Bundle FHIR (JSON o XML)
bundle-not-bundle = POST a la base recibe un Bundle de tipo transaction o batch
bundle-wrong-type = POST a la base recibe un Bundle transaction o batch, no de tipo '{ $bundle_type }'
bundle-empty = Un Bundle { $bundle_type } necesita al menos una entrada
bundle-entry-array = Bundle.entry debe ser un arreglo
bundle-duplicate-full-url = fullUrl '{ $full_url }' también lo usa Bundle.entry[{ $first }]
bundle-entry-request = Cada entrada necesita un request
bundle-entry-method = request.method debe ser GET, HEAD, POST, PUT, PATCH o DELETE
bundle-entry-url = request.url es obligatorio
bundle-entry-resource = Las entradas POST, PUT y PATCH necesitan un recurso
bundle-entry-if-match = request.ifMatch debe ser un ETag de versión
bundle-entry-url-form = request.url '{ $url }' debe ser Tipo/id o Tipo?búsqueda
bundle-post-url = El request.url de una entrada POST debe ser el tipo de recurso, no '{ $url }'

## references

bundle-reference-unknown = La referencia '{ $reference }' no designa ninguna entrada de este Bundle

## conditional

if-none-exist-entry-multiple-matches = ifNoneExist '{ $query }' coincide con más de un { $resource_type }

## references

conditional-reference-none = La referencia condicional '{ $reference }' no coincide con nada
conditional-reference-many = La referencia condicional '{ $reference }' coincide con más de un recurso

## operations

parameter-not-integer = { $name } debe ser un valueInteger
parameter-not-boolean = { $name } debe ser un valueBoolean
parameter-not-instant = { $name } debe ser una fecha y hora con desfase horario, como 2027-03-15T09:00:00-07:00
parameter-required = El parámetro '{ $name }' es obligatorio

## consults

find-referral-reference = referral debe ser una referencia a un ServiceRequest, no '{ $referral }'
find-duration = minutesDuration debe estar entre 10 y 240 minutos
find-window = latest debe dejar margen para la consulta después de earliest

## history

history-invalid-value = Valor '{ $value }' no válido para { $key }
history-unsupported-parameter = El historial no admite el parámetro '{ $key }'

## general

version-not-known = { $reference } no tiene la versión { $version }
version-deleted = La versión { $version } de { $reference } registra su eliminación

## search

search-post-form = POST _search recibe application/x-www-form-urlencoded

## operations

operation-media = Las operaciones reciben un recurso Parameters de FHIR (JSON o XML)
operation-not-parameters = Las operaciones reciben un recurso Parameters
operation-unknown = Operación '{ $operation }' desconocida

## validation

validate-media = $validate recibe un recurso FHIR o Parameters (JSON o XML)
validate-no-resource = $validate necesita un recurso: el cuerpo o un 'resource' en Parameters
validate-wrong-type = $validate sobre { $expected } recibió un { $found }
validate-no-issues = No se encontraron problemas

## scorecard

scorecard-parameter = $partner-scorecard recibe partner, period y _format, no '{ $parameter }'
scorecard-date = '{ $value }' no es una fecha FHIR (2026, 2026-11, 2026-11-29)
scorecard-period-reversed = el período '{ $period }' termina antes de empezar
scorecard-own-only = Un socio solo consulta su propio cuadro de indicadores
scorecard-name-partner = Indique el socio: partner=ID
scorecard-unknown-partner = No hay ningún socio '{ $partner }' configurado
scorecard-staff-roles = Los cuadros de indicadores de socios son para coordinadores y administradores

## notifications

consult-description = Teleconsulta para una segunda opinión
consult-reminder = Recordatorio: la teleconsulta de su derivación comienza el { $start }.
subscription-configured-reason = Cambios en las Task de derivación, desde el notification_endpoint del socio
subscription-handshake-failed = Falló el handshake: { $reason }

## access

auth-no-token = no hay token de portador (Authorization: Bearer <token>)
auth-invalid-token = token no válido: { $reason }
auth-scope = el token no permite { $interaction } sobre { $resource_type }
auth-certificate-mismatch = el certificado de cliente no coincide: { $reason }

## validation rules

rule-constraint = La restricción { $key } no se cumple: { $human }
rule-constraint-not-evaluated = No se pudo evaluar la restricción { $key }
rule-cardinality = { $element } aparece { $found } veces; se permiten de { $min } a { $max }
rule-slice = El segmento '{ $name }' de { $element } contiene { $found } elementos; se permiten de { $min } a { $max }
rule-closed-slicing = Este elemento no corresponde a ningún segmento de la segmentación cerrada de { $profile }
