# rex: partner-facing texts, Arabic. Same ids and variables as en/rex.ftl (the reference).
# Variables ({ $name }) are filled in by rex; keep them, reorder them as the language needs.

## general

internal-error = خطأ داخلي في الخادم؛ لم يُنفَّذ الطلب
resource-not-known = { $reference } غير معروف
version-conflict = تعارض في الإصدار: توقّع If-Match الإصدار { $expected }، والإصدار الحالي هو { $current }
already-exists = { $what } موجود بالفعل
concurrent-change = تعارض تغيير متزامن مع هذا الطلب؛ أعد المحاولة
no-smart-configuration = يعمل هذا الخادم دون مصادقة (--dev): لا يوجد إعداد SMART
rate-limited = تم بلوغ حد { $limit } طلبًا في الدقيقة؛ أعد المحاولة بعد { $wait } ثانية

## limits

xml-body-too-large = يقتصر حجم أجسام طلبات FHIR XML على { $limit } بايت (حجم الأجسام الكبيرة)؛ أرسل المحتوى الأكبر بصيغة FHIR JSON

## body

upload-interrupted = انقطع الرفع

## limits

content-too-large = يتجاوز المحتوى الحد البالغ { $limit } بايت

## body

unsupported-content-type = نوع المحتوى Content-Type '{ $content_type }' غير مدعوم: أرسل application/fhir+json أو application/fhir+xml
unsupported-format = يجيب rex بصيغة FHIR JSON أو FHIR XML؛ الصيغة _format '{ $format }' غير مدعومة

## limits

large-bodies-busy = يعالج rex بالفعل أقصى عدد يقبله في آن واحد من أجسام الطلبات التي تتجاوز { $threshold } بايت؛ أعد المحاولة بعد { $wait } ثانية
body-too-large = يتجاوز جسم الطلب الحد البالغ { $limit } بايت

## conditional

if-match-not-etag = يجب أن يكون If-Match وسم ETag لإصدار مثل W/"3"

## access

staff-only-operation = { $operation } من اختصاص موظفي المستشفى؛ لا يمكن للشركاء تنفيذها
metrics-admins-only = المقاييس مخصّصة للمسؤولين

## general

no-endpoint = لا توجد نقطة نهاية FHIR في هذا العنوان؛ أساس FHIR هو /fhir
method-not-allowed = طريقة HTTP هذه غير مسموح بها في هذا العنوان
not-found = غير موجود
malformed-request = الطلب مشوّه ({ $reason })

## subscriptions

endpoint-refused = رُفض channel.endpoint: { $reason }
subscription-rest-hook-only = يرسل rex الإشعارات عبر rest-hook فقط
subscription-criteria-invalid = بحث criteria غير صالح: { $reasons }
subscription-header-refused = يجب أن يحتوي channel.header على ترويسات بصيغة 'Name: value'؛ أما Host وContent-Length وContent-Type وترويسات hop-by-hop (Connection وTransfer-Encoding...) فيضبطها rex
subscription-json-only = يرسل rex الإشعارات بصيغة application/fhir+json
subscription-payload-content = محتوى payload '{ $content }' ليس أحد القيم empty أو id-only أو full-resource
subscription-criteria-tasks = يُرسل rex إشعارات عن مهام الإحالة (Task): يجب أن يكون criteria إما 'Task' أو 'Task?<بحث>' أو { $topic }

## general

resource-deleted = حُذف { $reference }

## body

takes-fhir-resource = يتطلب هذا التفاعل موردًا من FHIR (application/fhir+json أو application/fhir+xml)

## outcomes

outcome-deleted = تم الحذف
outcome-created = تم الإنشاء
outcome-existing = يوجد مورد مطابق؛ لم يُنشأ شيء
outcome-updated = تم التحديث

## conditional

if-none-exist-not-text = قيمة If-None-Exist ليست نصًا صالحًا
conditional-update-needs-search = يتطلب التحديث الشرطي معاملات بحث
conditional-delete-needs-search = يتطلب DELETE على نوع مورد معاملات بحث (حذف شرطي)

## body

patch-content-type = يتطلب PATCH النوع application/json-patch+json

## search

search-too-many-parameters = يحتوي البحث على أكثر من { $limit } معاملًا (المعايير و_include و_revinclude)، وهو حد rex
search-too-many-values = يحتوي البحث على أكثر من { $limit } قيمة إجمالًا، وهو حد rex
search-unknown-include-modifier = المُعدِّل ':{ $modifier }' غير معروف في { $code }
search-summary-unsupported = _summary={ $value } غير مدعوم (فقط count وfalse)
search-total-invalid = يجب أن تكون قيمة _total إحدى none أو estimate أو accurate، وليس '{ $value }'
search-chaining-unsupported = معاملات البحث المتسلسلة غير مدعومة
search-has-unsupported = التسلسل العكسي (_has) غير مدعوم
search-unknown-parameter = معامل البحث '{ $code }' غير معروف أو غير مدعوم لـ { $resource_type }
search-too-many-sort-keys = يحتوي _sort على أكثر من { $limit } مفاتيح، وهو حد rex
search-sort-unsupported = الترتيب حسب '{ $code }' غير مدعوم (استخدم _lastUpdated أو _id أو معامل تاريخ أو نص)
search-sort-repeated = يذكر _sort المعامل '{ $code }' أكثر من مرة
search-include-form = '{ $value }' ليس بالصيغة Type:param[:Target]
search-include-unknown-type = نوع المورد '{ $resource_type }' غير معروف في '{ $value }'
search-include-not-reference = '{ $param }' ليس معامل مرجع في { $resource_type }
search-missing-value = يقبل :missing القيمة true أو false، وليس '{ $value }'
search-no-value = معامل البحث '{ $code }' بلا قيمة
search-parameter-too-many-values = معامل البحث '{ $code }' له { $count } قيمة؛ وحد rex هو { $limit } لكل معامل
search-modifier-unsupported = المُعدِّل ':{ $modifier }' غير مدعوم في '{ $code }'
search-parameter-unsupported = معامل البحث '{ $code }' غير مدعوم
search-date-invalid = '{ $value }' ليس date أو dateTime أو instant صالحًا في FHIR
search-not-a-number = '{ $value }' ليس رقمًا
search-not-finite = '{ $value }' ليس رقمًا محدودًا
search-not-count = يجب أن يكون { $name } عددًا صحيحًا غير سالب، وليس '{ $value }'

## parsing

json-not-object = يجب أن يكون الجسم كائن JSON يحتوي على مورد FHIR
json-invalid = الجسم ليس JSON صالحًا: { $error }

## limits

json-too-deep = يتجاوز تداخل جسم JSON الحد البالغ { $limit } مستوى

## parsing

json-duplicate-key = يظهر المفتاح '{ $key }' أكثر من مرة في كائن JSON نفسه
xml-not-fhir = الجسم ليس FHIR XML صالحًا: { $error }
xml-not-resource = يجب أن يحتوي الجسم على مورد FHIR

## limits

xml-too-deep = يتجاوز تداخل جسم XML الحد البالغ { $limit } مستوى (السطر { $line }، العمود { $column })

## parsing

xml-not-utf8 = يجب ترميز أجسام FHIR XML بـ UTF-8 (السطر { $line }، العمود { $column })
xml-doctype = لا تُقبل تصريحات DOCTYPE: لا يعرّف FHIR XML كيانات ولا DTD (السطر { $line }، العمود { $column })
xml-processing-instruction = لا تُقبل تعليمات المعالجة في FHIR XML (السطر { $line }، العمود { $column })
xml-cdata = لا تُقبل مقاطع CDATA في FHIR XML (السطر { $line }، العمود { $column })
xml-malformed-attribute = سمة مشوّهة: { $error } (السطر { $line }، العمود { $column })

## limits

xml-too-many-attributes = يحمل وسم XML أكثر من { $attributes } سمة أو { $namespaces } تصريحات لمساحات الأسماء (السطر { $line }، العمود { $column })

## parsing

xml-narrative-namespace = يجب كتابة السرد بالشكل <div xmlns="{ $namespace }">...</div> (السطر { $line }، العمود { $column })
xml-undefined-entity = مرجع الكيان '{ $entity }' غير معرّف (لا يوجد DTD في FHIR XML) (السطر { $line }، العمود { $column })
xml-narrative-not-utf8 = السرد ليس UTF-8 صالحًا
xml-narrative-misplaced = عنصر div للسرد في غير موضعه
xml-not-well-formed = الجسم ليس XML سليم البنية: { $error } (السطر { $line }، العمود { $column })

## structure

resource-not-object = يجب أن يكون المورد كائن JSON
unknown-resource-type = نوع المورد '{ $resource_type }' غير معروف
no-resource-type = المورد بلا resourceType
empty-object = الكائنات الفارغة غير مسموح بها
unknown-element = العنصر '{ $key }' غير معروف

## limits

array-too-long = يحتوي '{ $key }' على { $count } عنصرًا؛ وحد rex هو { $limit } في المصفوفة الواحدة

## structure

empty-array = المصفوفات الفارغة غير مسموح بها
must-be-array = يتكرر '{ $key }'، لذا يجب أن يكون مصفوفة JSON
must-not-be-array = لـ '{ $key }' قيمة واحدة على الأكثر، لذا يجب ألا يكون مصفوفة
missing-required-element = العنصر الإلزامي '{ $name }' مفقود
null-not-allowed = القيمة null غير مسموح بها
expected-object = كان المتوقع كائن JSON

## limits

array-limit = حد rex هو { $limit } عنصرًا في المصفوفة الواحدة

## structure

malformed-primitive-extension = امتداد نوع أولي مشوّه
primitive-not-string = يجب أن تكون قيمة { $type_name } سلسلة JSON غير فارغة، وليس { $value }
primitive-not-number = يجب أن تكون قيمة { $type_name } رقم JSON، وليس { $value }
primitive-not-boolean = يجب أن تكون قيمة { $type_name } قيمة منطقية JSON، وليس { $value }

## search

search-timed-out = استغرق البحث أكثر من حد rex البالغ { $limit } ميلي ثانية فأُوقف؛ ضيّق نطاقه (معايير أدق، _total=none، قيمة _count أصغر)

## limits

too-many-index-values = ينتج المورد { $resource_type } أكثر من { $limit } قيمة فهرسة للبحث، وهو حد rex (بُلغ عند معامل البحث '{ $code }')

## workflow

transition-refused = لا يمكن لمهمة إحالة (Task) في الحالة '{ $from }' أن { $action }؛ المسموح هنا: { $allowed }
transition-become = تنتقل إلى '{ $status }'
transition-finished = لا شيء (انتهت الإحالة)

## consent

consent-other-patient = لا يخص مريض الإحالة ({ $patient })
consent-not-active = قيمته '{ $status }' وليست 'active'
consent-scope = ليس { $scope }
consent-category = لا يحتوي على { $category } (الإفصاح عن المعلومات)
consent-denies = يرفض بدلًا من أن يسمح
consent-no-start = بلا بداية (متى يبدأ الإذن)
consent-future = يبدأ في المستقبل
consent-ended = قد انتهى
consent-cannot-carry = لا يمكن لهذه الموافقة (Consent) أن تغطي الإحالة: { $element } { $problem }
consent-required = يجب أن تتضمن إحالات هذا الشريك موافقة (Consent) سارية من المريض (الملف التعريفي rex-referral-consent): النطاق scope { $scope }، والفئة category { $category }، والمريض هو مريض الإحالة، وفترة provision.period تشمل الوقت الحالي

## referral

referral-one-service-request = تحمل حزمة الإحالة (Bundle) طلب خدمة إحالة (ServiceRequest) واحدًا بالضبط
referral-identifier = تحتاج الإحالة إلى معرّف عمل يتضمن system وvalue (ServiceRequest.identifier)
referral-partner-unknown = تعذّر تحديد الشريك الذي يرسل هذه الإحالة: يجب أن يكون الطالب (requester) منظمةً (Organization) لها معرّف في { $system } أو تابعًا لها
referral-unknown-priority = الأولوية '{ $code }' غير معروفة
referral-patient = تحدد الإحالة مريضها (ServiceRequest.subject.reference)
referral-other-partner = تُرسل هذه الإحالة نيابةً عن الشريك '{ $named }' (معرّف المنظمة الطالبة في { $system })، لكن رمز الوصول يخص الشريك '{ $partner }'

## consults

scheduling-hospital-only = موارد { $resource_type } تخص المستشفى: يبحث الشركاء عن المواعيد ويحجزونها عبر Appointment/$find و$book
consult-operations-only = لا تتغير الاستشارة عن بُعد إلا عبر Task/$request-consult وAppointment/$book و$cancel
consult-none = لا توجد استشارة عن بُعد مقترحة أو محجوزة لـ { $referral }؛ يطلبها الطبيب الأخصائي عبر Task/$request-consult
consult-claim-first = تكون الاستشارة مع الطبيب الأخصائي الذي تولّى الإحالة: تولَّها أولًا
consult-already-open = { $appointment } هو بالفعل الاستشارة المفتوحة لهذه الإحالة؛ ألغِه أولًا
consult-interpreter-language = يحتاج المترجم الفوري إلى لغة المريض: أدخل 'language' (لا تذكر الإحالة أي لغة)
book-not-appointment = يجب أن يكون appointment-resource موعدًا (Appointment)
book-no-referral = يجب أن يذكر الموعد (Appointment) إحالته في basedOn
book-slot-reference = يجب أن تكون كل خانة مرجعًا إلى Slot مختلف
book-slot-count = تحجز الاستشارة خانة الطبيب الأخصائي وخانة مترجم واحدة على الأكثر
consult-cancelled-meanwhile = أُلغيت الاستشارة في هذه الأثناء
slot-interpreter-language = { $slot } مع مترجم لا يتحدث { $language }
slot-not-for-consult = { $slot } ليست لهذه الاستشارة: احجز خانة لطبيبها الأخصائي
slot-not-for-consult-interpreted = { $slot } ليست لهذه الاستشارة: احجز خانة لطبيبها الأخصائي وخانة لمترجم
book-needs-specialist-slot = يتطلب الحجز خانة للطبيب الأخصائي المعني بالاستشارة
book-needs-interpreter = يحتاج المريض إلى مترجم: احجز خانة مترجم للغة { $language }
slot-too-short = { $slot } لا تتسع لاستشارة مدتها { $minutes } دقيقة ضمن الفترة المطلوبة
slot-in-past = { $slot } في الماضي
slot-not-covering = { $slot } لا تغطي وقت الاستشارة
slot-taken = { $slot } لم تعد متاحة؛ استدعِ Appointment/$find مجددًا
consult-referral-closed = لم تعد الإحالة { $referral } قيد المراجعة؛ لا يمكن حجز استشارتها
not-a-consult = { $appointment } ليس استشارة عن بُعد
consult-not-cancellable = حالة { $appointment } هي { $status }؛ لا يمكن إلغاء إلا استشارة مقترحة أو محجوزة

## writes

wrong-resource-type = المورد من نوع { $found }، لكن الطلب موجّه إلى { $resource_type }
invalid-id = يجب أن يتكون Resource.id من 1 إلى 64 حرفًا من A-Z وa-z و0-9 و'-' و'.'

## conditional

conditional-needs-search = يتطلب الطلب الشرطي معاملات بحث
condition-multiple-matches = يطابق الشرط '{ $query }' أكثر من مورد { $resource_type }
if-none-exist-multiple-matches = يطابق If-None-Exist '{ $query }' أكثر من مورد { $resource_type }

## writes

id-mismatch = يجب أن يساوي معرّف المورد ({ $body_id }) المعرّف الوارد في العنوان ({ $id })
id-missing = يجب أن يساوي معرّف المورد (مفقود) المعرّف الوارد في العنوان ({ $id })

## conditional

id-differs-from-match = يختلف معرّف المورد عن المورد الذي طابق الشرط

## references

reference-unknown = المرجع '{ $reference }' لا يشير إلى أي مورد على هذا الخادم

## conditional

condition-no-match = لا يوجد { $resource_type } يطابق الشرط

## patch

patch-invalid = الجسم ليس مستند JSON Patch: { $error }
patch-failed = تعذّر تطبيق التعديل: { $error }
patch-changes-id = يجب ألا يغيّر التعديل معرّف المورد
patch-entry-binary = يجب أن يحمل إدخال PATCH موردًا من نوع Binary بنوع محتوى application/json-patch+json
patch-entry-base64 = قيمة Binary.data ليست base64 صالحًا
patch-entry-not-patch = قيمة Binary.data ليست مستند JSON Patch

## messages

message-unknown-event = حدث رسالة غير معروف: يعالج rex رموز { $system } التالية: referral-request وreferral-update وreferral-revoke وreferral-communication
message-media = يتطلب $process-message حزمة رسالة FHIR (JSON أو XML)
message-not-message-bundle = يتطلب $process-message حزمة (Bundle) من النوع message
message-header-first = يجب أن يكون الإدخال الأول في حزمة الرسالة هو MessageHeader الخاص بها
message-needs-referral = يتطلب هذا الحدث إحالة: طلب خدمة (ServiceRequest) من فئة الإحالة أو الرأي الثاني
message-no-referral-to-revoke = لا توجد إحالة { $identifier } من هذا الشريك لإلغائها

## bundles

bundle-media = يتطلب الإرسال (POST) إلى الأساس حزمة FHIR (JSON أو XML)
bundle-not-bundle = يتطلب الإرسال (POST) إلى الأساس حزمة من النوع transaction أو batch
bundle-wrong-type = يتطلب الإرسال (POST) إلى الأساس حزمة transaction أو batch، وليس من النوع '{ $bundle_type }'
bundle-empty = تحتاج حزمة { $bundle_type } إلى إدخال واحد على الأقل
bundle-entry-array = يجب أن يكون Bundle.entry مصفوفة
bundle-duplicate-full-url = يُستخدم fullUrl '{ $full_url }' أيضًا في Bundle.entry[{ $first }]
bundle-entry-request = يحتاج كل إدخال إلى request
bundle-entry-method = يجب أن تكون قيمة request.method إحدى GET أو HEAD أو POST أو PUT أو PATCH أو DELETE
bundle-entry-url = الحقل request.url إلزامي
bundle-entry-resource = تحتاج إدخالات POST وPUT وPATCH إلى مورد
bundle-entry-if-match = يجب أن يكون request.ifMatch وسم ETag لإصدار
bundle-entry-url-form = يجب أن يكون request.url '{ $url }' بالصيغة Type/id أو Type?بحث
bundle-post-url = يجب أن يكون request.url في إدخال POST هو نوع المورد، وليس '{ $url }'

## references

bundle-reference-unknown = المرجع '{ $reference }' لا يشير إلى أي إدخال في هذه الحزمة

## conditional

if-none-exist-entry-multiple-matches = يطابق ifNoneExist '{ $query }' أكثر من مورد { $resource_type }

## references

conditional-reference-none = المرجع الشرطي '{ $reference }' لا يطابق أي شيء
conditional-reference-many = المرجع الشرطي '{ $reference }' يطابق أكثر من مورد

## operations

parameter-not-integer = يجب أن يكون { $name } من النوع valueInteger
parameter-not-boolean = يجب أن يكون { $name } من النوع valueBoolean
parameter-not-instant = يجب أن يكون { $name } تاريخًا ووقتًا مع فارق التوقيت، مثل 2027-03-15T09:00:00-07:00
parameter-required = المعامل '{ $name }' إلزامي

## consults

find-referral-reference = يجب أن يكون referral مرجعًا إلى ServiceRequest، وليس '{ $referral }'
find-duration = يجب أن تكون قيمة minutesDuration بين 10 و240 دقيقة
find-window = يجب أن يترك latest وقتًا كافيًا للاستشارة بعد earliest

## history

history-invalid-value = القيمة '{ $value }' غير صالحة لـ { $key }
history-unsupported-parameter = لا يدعم السجل التاريخي المعامل '{ $key }'

## general

version-not-known = لا يوجد إصدار { $version } من { $reference }
version-deleted = يسجّل الإصدار { $version } من { $reference } حذفه

## search

search-post-form = يتطلب POST _search النوع application/x-www-form-urlencoded

## operations

operation-media = تتطلب العمليات مورد Parameters من FHIR (JSON أو XML)
operation-not-parameters = تتطلب العمليات مورد Parameters
operation-unknown = العملية '{ $operation }' غير معروفة

## validation

validate-media = يتطلب $validate موردًا من FHIR أو Parameters (JSON أو XML)
validate-no-resource = يحتاج $validate إلى مورد: الجسم، أو 'resource' ضمن Parameters
validate-wrong-type = استقبل $validate على { $expected } موردًا من نوع { $found }
validate-no-issues = لم يُعثر على أي مشكلات

## scorecard

scorecard-parameter = يقبل $partner-scorecard المعاملات partner وperiod و_format، وليس '{ $parameter }'
scorecard-date = '{ $value }' ليس تاريخ FHIR (2026، 2026-11، 2026-11-29)
scorecard-period-reversed = الفترة '{ $period }' تنتهي قبل أن تبدأ
scorecard-own-only = لا يطّلع الشريك إلا على بطاقة أدائه
scorecard-name-partner = حدّد الشريك: partner=ID
scorecard-unknown-partner = لا يوجد شريك مُعدّ باسم '{ $partner }'
scorecard-staff-roles = بطاقات أداء الشركاء مخصّصة للمنسقين والمسؤولين

## notifications

consult-description = استشارة عن بُعد للحصول على رأي طبي ثانٍ
consult-reminder = تذكير: تبدأ الاستشارة عن بُعد الخاصة بإحالتكم في { $start }.
subscription-configured-reason = تغييرات مهام الإحالة (Task)، من notification_endpoint الخاص بالشريك
subscription-handshake-failed = فشلت المصافحة (handshake): { $reason }

## access

auth-no-token = لا يوجد رمز حامل (Authorization: Bearer <token>)
auth-invalid-token = رمز غير صالح: { $reason }
auth-scope = لا يسمح الرمز بـ { $interaction } على { $resource_type }
auth-certificate-mismatch = عدم تطابق شهادة العميل: { $reason }

## validation rules

rule-constraint = القيد { $key } غير مستوفى: { $human }
rule-constraint-not-evaluated = تعذّر تقييم القيد { $key }
rule-cardinality = يرد { $element } { $found } مرات؛ والمسموح من { $min } إلى { $max }
rule-slice = الشريحة '{ $name }' من { $element } تحتوي على { $found } عناصر؛ والمسموح من { $min } إلى { $max }
rule-closed-slicing = هذا العنصر لا يطابق أي شريحة من التقسيم المغلق في { $profile }
