# rex: partner-facing texts, French. Same ids and variables as en/rex.ftl (the reference).
# Variables ({ $name }) are filled in by rex; keep them, reorder them as the language needs.

## general

internal-error = Erreur interne du serveur ; la requête n'a pas été appliquée
resource-not-known = { $reference } est inconnu
version-conflict = Conflit de version : If-Match attendait la version { $expected }, la version actuelle est { $current }
already-exists = { $what } existe déjà
concurrent-change = Une modification concurrente est entrée en conflit avec cette requête ; réessayez-la
no-smart-configuration = Ce serveur fonctionne sans authentification (--dev) : pas de configuration SMART
rate-limited = Limite de { $limit } requêtes par minute atteinte ; réessayez dans { $wait } s

## limits

xml-body-too-large = Les corps de requête FHIR XML sont limités à { $limit } octets (la taille des gros corps) ; envoyez un contenu plus volumineux en FHIR JSON

## body

upload-interrupted = Le téléversement a été interrompu

## limits

content-too-large = Le contenu dépasse la limite de { $limit } octets

## body

unsupported-content-type = Content-Type '{ $content_type }' non pris en charge : envoyez application/fhir+json ou application/fhir+xml
unsupported-format = rex répond en FHIR JSON ou FHIR XML ; _format '{ $format }' n'est pas pris en charge

## limits

large-bodies-busy = rex traite déjà autant de corps de requête de plus de { $threshold } octets qu'il en accepte à la fois ; réessayez dans { $wait } s
body-too-large = Le corps de la requête dépasse la limite de { $limit } octets

## conditional

if-match-not-etag = If-Match doit être un ETag de version tel que W/"3"

## access

staff-only-operation = { $operation } relève du personnel hospitalier ; les partenaires ne peuvent pas l'exécuter
metrics-admins-only = Les métriques sont réservées aux administrateurs

## general

no-endpoint = Aucun point d'accès FHIR à cette URL ; la base FHIR est /fhir
method-not-allowed = Cette méthode HTTP n'est pas autorisée sur cette URL
not-found = Introuvable
malformed-request = La requête est mal formée ({ $reason })

## subscriptions

endpoint-refused = channel.endpoint est refusé : { $reason }
subscription-rest-hook-only = rex n'envoie les notifications que par rest-hook
subscription-criteria-invalid = La recherche de criteria n'est pas valide : { $reasons }
subscription-header-refused = channel.header doit contenir des en-têtes 'Nom: valeur' ; Host, Content-Length, Content-Type et les en-têtes hop-by-hop (Connection, Transfer-Encoding...) sont fixés par rex
subscription-json-only = rex envoie les notifications en application/fhir+json
subscription-payload-content = le contenu de payload '{ $content }' n'est ni empty, ni id-only, ni full-resource
subscription-criteria-tasks = rex notifie les Task de demande d'avis : criteria doit être 'Task', 'Task?<recherche>' ou { $topic }

## general

resource-deleted = { $reference } a été supprimé

## body

takes-fhir-resource = Cette interaction attend une ressource FHIR (application/fhir+json ou application/fhir+xml)

## outcomes

outcome-deleted = Supprimé
outcome-created = Créé
outcome-existing = Une ressource correspondante existe ; rien n'a été créé
outcome-updated = Mis à jour

## conditional

if-none-exist-not-text = If-None-Exist n'est pas un texte valide
conditional-update-needs-search = Une mise à jour conditionnelle nécessite des paramètres de recherche
conditional-delete-needs-search = DELETE sur un type de ressource nécessite des paramètres de recherche (suppression conditionnelle)

## body

patch-content-type = PATCH attend application/json-patch+json

## search

search-too-many-parameters = La recherche comporte plus de { $limit } paramètres (critères, _include et _revinclude), la limite de rex
search-too-many-values = La recherche comporte plus de { $limit } valeurs au total, la limite de rex
search-unknown-include-modifier = Modificateur ':{ $modifier }' inconnu sur { $code }
search-summary-unsupported = _summary={ $value } n'est pas pris en charge (seulement count et false)
search-total-invalid = _total doit valoir none, estimate ou accurate, et non '{ $value }'
search-chaining-unsupported = Les paramètres de recherche chaînés ne sont pas pris en charge
search-has-unsupported = Le chaînage inverse (_has) n'est pas pris en charge
search-unknown-parameter = Paramètre de recherche '{ $code }' inconnu ou non pris en charge pour { $resource_type }
search-too-many-sort-keys = _sort comporte plus de { $limit } clés, la limite de rex
search-sort-unsupported = Le tri par '{ $code }' n'est pas pris en charge (utilisez _lastUpdated, _id, un paramètre de date ou de chaîne)
search-sort-repeated = _sort cite '{ $code }' plus d'une fois
search-include-form = '{ $value }' n'a pas la forme Type:paramètre[:Cible]
search-include-unknown-type = Type de ressource '{ $resource_type }' inconnu dans '{ $value }'
search-include-not-reference = '{ $param }' n'est pas un paramètre de référence de { $resource_type }
search-missing-value = :missing accepte true ou false, et non '{ $value }'
search-no-value = Le paramètre de recherche '{ $code }' n'a pas de valeur
search-parameter-too-many-values = Le paramètre de recherche '{ $code }' a { $count } valeurs ; la limite de rex est de { $limit } par paramètre
search-modifier-unsupported = Le modificateur ':{ $modifier }' n'est pas pris en charge sur '{ $code }'
search-parameter-unsupported = Le paramètre de recherche '{ $code }' n'est pas pris en charge
search-date-invalid = '{ $value }' n'est pas un date, dateTime ou instant FHIR valide
search-not-a-number = '{ $value }' n'est pas un nombre
search-not-finite = '{ $value }' n'est pas un nombre fini
search-not-count = { $name } doit être un entier positif ou nul, et non '{ $value }'

## parsing

json-not-object = Le corps doit être un objet JSON contenant une ressource FHIR
json-invalid = Le corps n'est pas un JSON valide : { $error }

## limits

json-too-deep = Le corps JSON dépasse la limite d'imbrication de { $limit } niveaux

## parsing

json-duplicate-key = La clé '{ $key }' apparaît plusieurs fois dans le même objet JSON
xml-not-fhir = Le corps n'est pas un FHIR XML valide : { $error }
xml-not-resource = Le corps doit contenir une ressource FHIR

## limits

xml-too-deep = Le corps XML dépasse la limite d'imbrication de { $limit } niveaux (ligne { $line }, colonne { $column })

## parsing

xml-not-utf8 = Les corps FHIR XML doivent être encodés en UTF-8 (ligne { $line }, colonne { $column })
xml-doctype = Les déclarations DOCTYPE ne sont pas acceptées : FHIR XML ne définit ni entités ni DTD (ligne { $line }, colonne { $column })
xml-processing-instruction = Les instructions de traitement ne sont pas acceptées en FHIR XML (ligne { $line }, colonne { $column })
xml-cdata = Les sections CDATA ne sont pas acceptées en FHIR XML (ligne { $line }, colonne { $column })
xml-malformed-attribute = Attribut mal formé : { $error } (ligne { $line }, colonne { $column })

## limits

xml-too-many-attributes = Une balise XML porte plus de { $attributes } attributs ou { $namespaces } déclarations d'espace de noms (ligne { $line }, colonne { $column })

## parsing

xml-narrative-namespace = La narration doit s'écrire <div xmlns="{ $namespace }">...</div> (ligne { $line }, colonne { $column })
xml-undefined-entity = La référence d'entité '{ $entity }' n'est pas définie (FHIR XML n'a pas de DTD) (ligne { $line }, colonne { $column })
xml-narrative-not-utf8 = La narration n'est pas en UTF-8 valide
xml-narrative-misplaced = Un div de narration est mal placé
xml-not-well-formed = Le corps n'est pas un XML bien formé : { $error } (ligne { $line }, colonne { $column })

## structure

resource-not-object = Une ressource doit être un objet JSON
unknown-resource-type = Type de ressource '{ $resource_type }' inconnu
no-resource-type = La ressource n'a pas de resourceType
empty-object = Les objets vides ne sont pas autorisés
unknown-element = Élément '{ $key }' inconnu

## limits

array-too-long = '{ $key }' compte { $count } éléments ; la limite de rex est de { $limit } dans un tableau

## structure

empty-array = Les tableaux vides ne sont pas autorisés
must-be-array = '{ $key }' est répétable et doit donc être un tableau JSON
must-not-be-array = '{ $key }' a au plus une valeur et ne doit donc pas être un tableau
missing-required-element = Élément obligatoire '{ $name }' manquant
null-not-allowed = null n'est pas autorisé
expected-object = Un objet JSON était attendu

## limits

array-limit = La limite de rex est de { $limit } éléments dans un tableau

## structure

malformed-primitive-extension = Extension de primitive mal formée
primitive-not-string = Une valeur { $type_name } doit être une chaîne JSON non vide, et non { $value }
primitive-not-number = Une valeur { $type_name } doit être un nombre JSON, et non { $value }
primitive-not-boolean = Une valeur { $type_name } doit être un booléen JSON, et non { $value }

## search

search-timed-out = La recherche a dépassé la limite de rex de { $limit } ms et a été arrêtée ; affinez-la (critères plus sélectifs, _total=none, un _count plus petit)

## limits

too-many-index-values = La ressource { $resource_type } produit plus de { $limit } valeurs d'index de recherche, la limite de rex (atteinte au paramètre de recherche '{ $code }')

## workflow

transition-refused = une Task de demande d'avis au statut '{ $from }' ne peut pas { $action } ; autorisé ici : { $allowed }
transition-become = passer à '{ $status }'
transition-finished = rien (la demande d'avis est terminée)

## consent

consent-other-patient = ne concerne pas le patient de la demande d'avis ({ $patient })
consent-not-active = vaut '{ $status }' et non 'active'
consent-scope = n'est pas { $scope }
consent-category = n'a pas { $category } (communication d'informations)
consent-denies = refuse au lieu d'autoriser
consent-no-start = n'a pas de début (date à laquelle l'autorisation commence)
consent-future = commence dans le futur
consent-ended = est terminé
consent-cannot-carry = Ce Consent ne peut pas couvrir la demande d'avis : { $element } { $problem }
consent-required = Les demandes d'avis de ce partenaire doivent comporter un Consent actif du patient (profil rex-referral-consent) : scope { $scope }, category { $category }, le patient de la demande d'avis et une provision.period couvrant la date actuelle

## referral

referral-one-service-request = Un Bundle de demande d'avis contient exactement un ServiceRequest de demande d'avis
referral-identifier = Une demande d'avis nécessite un identifiant métier avec system et value (ServiceRequest.identifier)
referral-partner-unknown = Impossible de déterminer quel partenaire envoie cette demande d'avis : le requester doit être (ou appartenir à) une Organization ayant un identifiant dans { $system }
referral-unknown-priority = Priorité '{ $code }' inconnue
referral-patient = Une demande d'avis désigne son patient (ServiceRequest.subject.reference)
referral-other-partner = Cette demande d'avis est envoyée au nom du partenaire '{ $named }' (l'identifiant de l'Organization demandeuse dans { $system }), mais le jeton d'accès appartient au partenaire '{ $partner }'

## consults

scheduling-hospital-only = Les ressources { $resource_type } appartiennent à l'hôpital : les partenaires trouvent et réservent des créneaux avec Appointment/$find et $book
consult-operations-only = Une téléconsultation ne change que par Task/$request-consult, Appointment/$book et $cancel
consult-none = Aucune téléconsultation n'est proposée ni réservée pour { $referral } ; le spécialiste en demande une avec Task/$request-consult
consult-claim-first = Une consultation a lieu avec le spécialiste qui a pris en charge la demande d'avis : prenez-la en charge d'abord
consult-already-open = { $appointment } est déjà la consultation ouverte de cette demande d'avis ; annulez-la d'abord
consult-interpreter-language = Un interprète a besoin de la langue du patient : indiquez 'language' (la demande d'avis n'en indique aucune)
book-not-appointment = appointment-resource doit être un Appointment
book-no-referral = L'Appointment doit désigner sa demande d'avis dans basedOn
book-slot-reference = Chaque slot doit être une référence à un Slot distinct
book-slot-count = Une consultation réserve le créneau du spécialiste et au plus un créneau d'interprète
consult-cancelled-meanwhile = La consultation a été annulée entre-temps
slot-interpreter-language = { $slot } est avec un interprète qui ne parle pas { $language }
slot-not-for-consult = { $slot } n'est pas pour cette consultation : réservez un créneau de son spécialiste
slot-not-for-consult-interpreted = { $slot } n'est pas pour cette consultation : réservez un créneau de son spécialiste et un créneau d'interprète
book-needs-specialist-slot = La réservation nécessite un créneau du spécialiste de la consultation
book-needs-interpreter = Le patient a besoin d'un interprète : réservez un créneau d'interprète pour { $language }
slot-too-short = { $slot } ne permet pas une consultation de { $minutes } minutes dans la période demandée
slot-in-past = { $slot } est dans le passé
slot-not-covering = { $slot } ne couvre pas l'horaire de la consultation
slot-taken = { $slot } n'est plus libre ; relancez Appointment/$find
consult-referral-closed = La demande d'avis { $referral } n'est plus en cours d'examen ; sa consultation ne peut pas être réservée
not-a-consult = { $appointment } n'est pas une téléconsultation
consult-not-cancellable = { $appointment } est au statut { $status } ; seule une consultation proposée ou réservée peut être annulée

## writes

wrong-resource-type = La ressource est un { $found }, mais la requête vise { $resource_type }
invalid-id = Resource.id doit compter 1 à 64 caractères parmi A-Z, a-z, 0-9, '-' et '.'

## conditional

conditional-needs-search = Une requête conditionnelle nécessite des paramètres de recherche
condition-multiple-matches = La condition '{ $query }' correspond à plus d'un { $resource_type }
if-none-exist-multiple-matches = If-None-Exist '{ $query }' correspond à plus d'un { $resource_type }

## writes

id-mismatch = L'id de la ressource ({ $body_id }) doit être égal à l'id de l'URL ({ $id })
id-missing = L'id de la ressource (absent) doit être égal à l'id de l'URL ({ $id })

## conditional

id-differs-from-match = L'id de la ressource diffère de celui de la ressource correspondant à la condition

## references

reference-unknown = La référence '{ $reference }' ne désigne aucune ressource de ce serveur

## conditional

condition-no-match = Aucun { $resource_type } ne correspond à la condition

## patch

patch-invalid = Le corps n'est pas un document JSON Patch : { $error }
patch-failed = Le patch ne peut pas être appliqué : { $error }
patch-changes-id = Un patch ne doit pas modifier l'id de la ressource
patch-entry-binary = Une entrée PATCH doit porter un Binary de contentType application/json-patch+json
patch-entry-base64 = Binary.data n'est pas un base64 valide
patch-entry-not-patch = Binary.data n'est pas un document JSON Patch

## messages

message-unknown-event = Événement de message inconnu : rex traite les codes { $system } referral-request, referral-update, referral-revoke et referral-communication
message-media = $process-message attend un Bundle de message FHIR (JSON ou XML)
message-not-message-bundle = $process-message attend un Bundle de type message
message-header-first = La première entrée d'un Bundle de message doit être son MessageHeader
message-needs-referral = Cet événement nécessite une demande d'avis : un ServiceRequest de catégorie demande d'avis ou second avis
message-no-referral-to-revoke = Aucune demande d'avis { $identifier } de ce partenaire à révoquer

## bundles

bundle-media = Un POST à la base attend un Bundle FHIR (JSON ou XML)
bundle-not-bundle = Un POST à la base attend un Bundle de type transaction ou batch
bundle-wrong-type = Un POST à la base attend un Bundle transaction ou batch, et non de type '{ $bundle_type }'
bundle-empty = Un Bundle { $bundle_type } nécessite au moins une entrée
bundle-entry-array = Bundle.entry doit être un tableau
bundle-duplicate-full-url = fullUrl '{ $full_url }' est aussi utilisé par Bundle.entry[{ $first }]
bundle-entry-request = Chaque entrée nécessite un request
bundle-entry-method = request.method doit valoir GET, HEAD, POST, PUT, PATCH ou DELETE
bundle-entry-url = request.url est obligatoire
bundle-entry-resource = Les entrées POST, PUT et PATCH nécessitent une ressource
bundle-entry-if-match = request.ifMatch doit être un ETag de version
bundle-entry-url-form = request.url '{ $url }' doit être Type/id ou Type?recherche
bundle-post-url = Le request.url d'une entrée POST doit être le type de ressource, et non '{ $url }'

## references

bundle-reference-unknown = La référence '{ $reference }' ne désigne aucune entrée de ce Bundle

## conditional

if-none-exist-entry-multiple-matches = ifNoneExist '{ $query }' correspond à plus d'un { $resource_type }

## references

conditional-reference-none = La référence conditionnelle '{ $reference }' ne correspond à rien
conditional-reference-many = La référence conditionnelle '{ $reference }' correspond à plus d'une ressource

## operations

parameter-not-integer = { $name } doit être un valueInteger
parameter-not-boolean = { $name } doit être un valueBoolean
parameter-not-instant = { $name } doit être une date et une heure avec décalage horaire, comme 2027-03-15T09:00:00-07:00
parameter-required = Le paramètre '{ $name }' est obligatoire

## consults

find-referral-reference = referral doit être une référence à un ServiceRequest, et non '{ $referral }'
find-duration = minutesDuration doit être compris entre 10 et 240 minutes
find-window = latest doit laisser la place à la consultation après earliest

## history

history-invalid-value = Valeur '{ $value }' non valide pour { $key }
history-unsupported-parameter = L'historique ne prend pas en charge le paramètre '{ $key }'

## general

version-not-known = { $reference } n'a pas de version { $version }
version-deleted = La version { $version } de { $reference } enregistre sa suppression

## search

search-post-form = POST _search attend application/x-www-form-urlencoded

## operations

operation-media = Les opérations attendent une ressource Parameters FHIR (JSON ou XML)
operation-not-parameters = Les opérations attendent une ressource Parameters
operation-unknown = Opération '{ $operation }' inconnue

## validation

validate-media = $validate attend une ressource FHIR ou Parameters (JSON ou XML)
validate-no-resource = $validate nécessite une ressource : le corps, ou un 'resource' dans Parameters
validate-wrong-type = $validate sur { $expected } a reçu un { $found }
validate-no-issues = Aucun problème détecté

## scorecard

scorecard-parameter = $partner-scorecard attend partner, period et _format, et non '{ $parameter }'
scorecard-date = '{ $value }' n'est pas une date FHIR (2026, 2026-11, 2026-11-29)
scorecard-period-reversed = la période '{ $period }' se termine avant de commencer
scorecard-own-only = Un partenaire ne consulte que son propre tableau de bord
scorecard-name-partner = Indiquez le partenaire : partner=ID
scorecard-unknown-partner = Aucun partenaire '{ $partner }' n'est configuré
scorecard-staff-roles = Les tableaux de bord des partenaires sont réservés aux coordinateurs et aux administrateurs

## notifications

consult-description = Téléconsultation pour un second avis
consult-reminder = Rappel : la téléconsultation de votre demande d'avis commence le { $start }.
subscription-configured-reason = Modifications des Task de demande d'avis, depuis le notification_endpoint du partenaire
subscription-handshake-failed = Le handshake a échoué : { $reason }

## access

auth-no-token = aucun jeton porteur (Authorization: Bearer <token>)
auth-invalid-token = jeton non valide : { $reason }
auth-scope = le jeton n'autorise pas { $interaction } sur { $resource_type }
auth-certificate-mismatch = le certificat client ne correspond pas : { $reason }

## validation rules

rule-constraint = La contrainte { $key } n'est pas respectée : { $human }
rule-constraint-not-evaluated = La contrainte { $key } n'a pas pu être évaluée
rule-cardinality = { $element } apparaît { $found } fois ; de { $min } à { $max } sont permis
rule-slice = La tranche '{ $name }' de { $element } contient { $found } éléments ; de { $min } à { $max } sont permis
rule-closed-slicing = Cet élément ne correspond à aucune tranche du découpage fermé de { $profile }
