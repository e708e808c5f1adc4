# rex: partner-facing texts, Simplified Chinese. Same ids and variables as en/rex.ftl (the reference).
# Variables ({ $name }) are filled in by rex; keep them, reorder them as the language needs.

## general

internal-error = 服务器内部错误；请求未被执行
resource-not-known = { $reference } 不存在
version-conflict = 版本冲突：If-Match 期望版本 { $expected }，当前版本为 { $current }
already-exists = { $what } 已存在
concurrent-change = 并发修改与此请求冲突；请重试
no-smart-configuration = 本服务器在无认证模式（--dev）下运行：没有 SMART 配置
rate-limited = 已达到每分钟 { $limit } 次请求的速率限制；请在 { $wait } 秒后重试

## limits

xml-body-too-large = FHIR XML 请求体不得超过 { $limit } 字节（大请求体阈值）；更大的内容请以 FHIR JSON 发送

## body

upload-interrupted = 上传已中断

## limits

content-too-large = 内容超过 { $limit } 字节的上限

## body

unsupported-content-type = 不支持的 Content-Type '{ $content_type }'：请发送 application/fhir+json 或 application/fhir+xml
unsupported-format = rex 以 FHIR JSON 或 FHIR XML 应答；不支持 _format '{ $format }'

## limits

large-bodies-busy = rex 正在处理的超过 { $threshold } 字节的请求体已达同时处理上限；请在 { $wait } 秒后重试
body-too-large = 请求体超过 { $limit } 字节的上限

## conditional

if-match-not-etag = If-Match 必须是版本 ETag，例如 W/"3"

## access

staff-only-operation = { $operation } 由医院工作人员执行；合作机构不能调用
metrics-admins-only = 指标仅供管理员使用

## general

no-endpoint = 此 URL 没有 FHIR 端点；FHIR 根地址是 /fhir
method-not-allowed = 此 URL 不允许该 HTTP 方法
not-found = 未找到
malformed-request = 请求格式错误（{ $reason }）

## subscriptions

endpoint-refused = channel.endpoint 被拒绝：{ $reason }
subscription-rest-hook-only = rex 仅通过 rest-hook 发送通知
subscription-criteria-invalid = criteria 搜索无效：{ $reasons }
subscription-header-refused = channel.header 必须是 'Name: value' 形式的头部；Host、Content-Length、Content-Type 及逐跳头部（Connection、Transfer-Encoding 等）由 rex 设置
subscription-json-only = rex 以 application/fhir+json 发送通知
subscription-payload-content = payload 内容 '{ $content }' 不是 empty、id-only 或 full-resource 之一
subscription-criteria-tasks = rex 只通知转诊 Task：criteria 必须是 'Task'、'Task?<搜索>' 或 { $topic }

## general

resource-deleted = { $reference } 已被删除

## body

takes-fhir-resource = 此交互接受 FHIR 资源（application/fhir+json 或 application/fhir+xml）

## outcomes

outcome-deleted = 已删除
outcome-created = 已创建
outcome-existing = 已存在匹配的资源；未创建任何内容
outcome-updated = 已更新

## conditional

if-none-exist-not-text = If-None-Exist 不是有效文本
conditional-update-needs-search = 条件更新需要搜索参数
conditional-delete-needs-search = 对资源类型执行 DELETE 需要搜索参数（条件删除）

## body

patch-content-type = PATCH 接受 application/json-patch+json

## search

search-too-many-parameters = 搜索的参数超过 { $limit } 个（条件、_include 和 _revinclude），这是 rex 的上限
search-too-many-values = 搜索的值总数超过 { $limit } 个，这是 rex 的上限
search-unknown-include-modifier = { $code } 上的修饰符 ':{ $modifier }' 未知
search-summary-unsupported = 不支持 _summary={ $value }（仅支持 count 和 false）
search-total-invalid = _total 必须是 none、estimate 或 accurate，而不是 '{ $value }'
search-chaining-unsupported = 不支持链式搜索参数
search-has-unsupported = 不支持反向链式搜索（_has）
search-unknown-parameter = { $resource_type } 的搜索参数 '{ $code }' 未知或不受支持
search-too-many-sort-keys = _sort 的排序键超过 { $limit } 个，这是 rex 的上限
search-sort-unsupported = 不支持按 '{ $code }' 排序（请使用 _lastUpdated、_id、日期或字符串参数）
search-sort-repeated = _sort 多次指定了 '{ $code }'
search-include-form = '{ $value }' 不符合 Type:param[:Target] 格式
search-include-unknown-type = '{ $value }' 中的资源类型 '{ $resource_type }' 未知
search-include-not-reference = '{ $param }' 不是 { $resource_type } 的引用参数
search-missing-value = :missing 只接受 true 或 false，而不是 '{ $value }'
search-no-value = 搜索参数 '{ $code }' 没有值
search-parameter-too-many-values = 搜索参数 '{ $code }' 有 { $count } 个值；rex 的上限是每个参数 { $limit } 个
search-modifier-unsupported = '{ $code }' 不支持修饰符 ':{ $modifier }'
search-parameter-unsupported = 不支持搜索参数 '{ $code }'
search-date-invalid = '{ $value }' 不是有效的 FHIR date、dateTime 或 instant
search-not-a-number = '{ $value }' 不是数字
search-not-finite = '{ $value }' 不是有限数字
search-not-count = { $name } 必须是非负整数，而不是 '{ $value }'

## parsing

json-not-object = 请求体必须是包含 FHIR 资源的 JSON 对象
json-invalid = 请求体不是有效的 JSON：{ $error }

## limits

json-too-deep = JSON 请求体的嵌套深度超过 { $limit } 层的上限

## parsing

json-duplicate-key = 键 '{ $key }' 在同一个 JSON 对象中出现了多次
xml-not-fhir = 请求体不是有效的 FHIR XML：{ $error }
xml-not-resource = 请求体必须包含一个 FHIR 资源

## limits

xml-too-deep = XML 请求体的嵌套深度超过 { $limit } 层的上限（第 { $line } 行，第 { $column } 列）

## parsing

xml-not-utf8 = FHIR XML 请求体必须使用 UTF-8 编码（第 { $line } 行，第 { $column } 列）
xml-doctype = 不接受 DOCTYPE 声明：FHIR XML 不定义实体或 DTD（第 { $line } 行，第 { $column } 列）
xml-processing-instruction = FHIR XML 中不接受处理指令（第 { $line } 行，第 { $column } 列）
xml-cdata = FHIR XML 中不接受 CDATA 节（第 { $line } 行，第 { $column } 列）
xml-malformed-attribute = 属性格式错误：{ $error }（第 { $line } 行，第 { $column } 列）

## limits

xml-too-many-attributes = 某个 XML 标签的属性超过 { $attributes } 个或命名空间声明超过 { $namespaces } 个（第 { $line } 行，第 { $column } 列）

## parsing

xml-narrative-namespace = 叙述部分必须写成 <div xmlns="{ $namespace }">...</div>（第 { $line } 行，第 { $column } 列）
xml-undefined-entity = 实体引用 '{ $entity }' 未定义（FHIR XML 没有 DTD）（第 { $line } 行，第 { $column } 列）
xml-narrative-not-utf8 = 叙述部分不是有效的 UTF-8
xml-narrative-misplaced = 叙述 div 的位置不正确
xml-not-well-formed = 请求体不是格式良好的 XML：{ $error }（第 { $line } 行，第 { $column } 列）

## structure

resource-not-object = 资源必须是 JSON 对象
unknown-resource-type = 未知的资源类型 '{ $resource_type }'
no-resource-type = 资源缺少 resourceType
empty-object = 不允许空对象
unknown-element = 未知元素 '{ $key }'

## limits

array-too-long = '{ $key }' 有 { $count } 项；rex 的上限是单个数组 { $limit } 项

## structure

empty-array = 不允许空数组
must-be-array = '{ $key }' 可重复，因此必须是 JSON 数组
must-not-be-array = '{ $key }' 最多只有一个值，因此不能是数组
missing-required-element = 缺少必需元素 '{ $name }'
null-not-allowed = 不允许 null
expected-object = 应为 JSON 对象

## limits

array-limit = rex 的上限是单个数组 { $limit } 项

## structure

malformed-primitive-extension = 基本类型扩展格式错误
primitive-not-string = { $type_name } 值必须是非空 JSON 字符串，而不是 { $value }
primitive-not-number = { $type_name } 值必须是 JSON 数字，而不是 { $value }
primitive-not-boolean = { $type_name } 值必须是 JSON 布尔值，而不是 { $value }

## search

search-timed-out = 搜索耗时超过 rex 的 { $limit } 毫秒上限，已被终止；请缩小范围（更有选择性的条件、_total=none、更小的 _count）

## limits

too-many-index-values = 该 { $resource_type } 产生的搜索索引值超过 { $limit } 个，这是 rex 的上限（在搜索参数 '{ $code }' 处达到）

## workflow

transition-refused = 状态为 '{ $from }' 的转诊 Task 不能执行 { $action }；此处允许：{ $allowed }
transition-become = 变为 '{ $status }'
transition-finished = 无（转诊已结束）

## consent

consent-other-patient = 不是关于该转诊的患者（{ $patient }）
consent-not-active = 为 '{ $status }'，而不是 'active'
consent-scope = 不是 { $scope }
consent-category = 缺少 { $category }（信息披露）
consent-denies = 是拒绝而不是允许
consent-no-start = 没有开始时间（许可何时生效）
consent-future = 开始时间在未来
consent-ended = 已结束
consent-cannot-carry = 此 Consent 不能支持该转诊：{ $element } { $problem }
consent-required = 该合作机构的转诊必须附带患者有效的 Consent（profile rex-referral-consent）：scope { $scope }，category { $category }，患者为该转诊的患者，provision.period 覆盖当前时间

## referral

referral-one-service-request = 转诊 Bundle 必须恰好包含一个转诊 ServiceRequest
referral-identifier = 转诊需要一个包含 system 和 value 的业务标识符（ServiceRequest.identifier）
referral-partner-unknown = 无法判断是哪个合作机构发送了此转诊：requester 必须是（或隶属于）一个在 { $system } 中有标识符的 Organization
referral-unknown-priority = 未知的优先级 '{ $code }'
referral-patient = 转诊必须指明其患者（ServiceRequest.subject.reference）
referral-other-partner = 此转诊是代表合作机构 '{ $named }' 发送的（申请方 Organization 在 { $system } 中的标识符），但访问令牌属于合作机构 '{ $partner }'

## consults

scheduling-hospital-only = { $resource_type } 属于医院：合作机构通过 Appointment/$find 和 $book 查找并预约时间
consult-operations-only = 远程会诊只能通过 Task/$request-consult、Appointment/$book 和 $cancel 更改
consult-none = { $referral } 没有已提议或已预约的远程会诊；由专科医生通过 Task/$request-consult 发起
consult-claim-first = 会诊由认领该转诊的专科医生进行：请先认领
consult-already-open = { $appointment } 已是此转诊的未结会诊；请先取消它
consult-interpreter-language = 口译员需要知道患者的语言：请提供 'language'（转诊中未注明）
book-not-appointment = appointment-resource 必须是 Appointment
book-no-referral = Appointment 必须在 basedOn 中指明其转诊
book-slot-reference = 每个 slot 必须是不同的 Slot 引用
book-slot-count = 一次会诊预约专科医生的时段，最多再加一个口译员时段
consult-cancelled-meanwhile = 会诊在此期间已被取消
slot-interpreter-language = { $slot } 的口译员不会说 { $language }
slot-not-for-consult = { $slot } 不属于此会诊：请预约其专科医生的时段
slot-not-for-consult-interpreted = { $slot } 不属于此会诊：请预约其专科医生的时段和一个口译员时段
book-needs-specialist-slot = 预约需要该会诊专科医生的时段
book-needs-interpreter = 患者需要口译员：请预约一个 { $language } 口译员时段
slot-too-short = { $slot } 在所请求的时间段内容纳不下 { $minutes } 分钟的会诊
slot-in-past = { $slot } 已是过去的时间
slot-not-covering = { $slot } 没有覆盖会诊时间
slot-taken = { $slot } 已不再空闲；请重新调用 Appointment/$find
consult-referral-closed = 转诊 { $referral } 已不在审阅中；无法预约其会诊
not-a-consult = { $appointment } 不是远程会诊
consult-not-cancellable = { $appointment } 的状态为 { $status }；只有已提议或已预约的会诊才能取消

## writes

wrong-resource-type = 资源是 { $found }，但请求针对的是 { $resource_type }
invalid-id = Resource.id 必须是 1 到 64 个字符，取自 A-Z、a-z、0-9、'-' 和 '.'

## conditional

conditional-needs-search = 条件请求需要搜索参数
condition-multiple-matches = 条件 '{ $query }' 匹配到多个 { $resource_type }
if-none-exist-multiple-matches = If-None-Exist '{ $query }' 匹配到多个 { $resource_type }

## writes

id-mismatch = 资源 id（{ $body_id }）必须与 URL 中的 id（{ $id }）相同
id-missing = 资源 id（缺失）必须与 URL 中的 id（{ $id }）相同

## conditional

id-differs-from-match = 资源 id 与条件匹配到的资源不同

## references

reference-unknown = 引用 '{ $reference }' 在本服务器上不指向任何资源

## conditional

condition-no-match = 没有 { $resource_type } 符合该条件

## patch

patch-invalid = 请求体不是 JSON Patch 文档：{ $error }
patch-failed = 无法应用该补丁：{ $error }
patch-changes-id = 补丁不得更改资源 id
patch-entry-binary = PATCH 条目必须携带 contentType 为 application/json-patch+json 的 Binary
patch-entry-base64 = Binary.data 不是有效的 base64
patch-entry-not-patch = Binary.data 不是 JSON Patch 文档

## messages

message-unknown-event = 未知的消息事件：rex 处理 { $system } 的代码 referral-request、referral-update、referral-revoke 和 referral-communication
message-media = $process-message 接受 FHIR 消息 Bundle（JSON 或 XML）
message-not-message-bundle = $process-message 接受 type 为 message 的 Bundle
message-header-first = 消息 Bundle 的第一个条目必须是其 MessageHeader
message-needs-referral = 此事件需要一个转诊：类别为转诊或第二诊疗意见的 ServiceRequest
message-no-referral-to-revoke = 该合作机构没有可撤销的转诊 { $identifier }

## bundles

bundle-media = 向根地址 POST 需要 FHIR Bundle（JSON 或 XML）
bundle-not-bundle = 向根地址 POST 需要 type 为 transaction 或 batch 的 Bundle
bundle-wrong-type = 向根地址 POST 需要 transaction 或 batch Bundle，而不是 type '{ $bundle_type }'
bundle-empty = { $bundle_type } Bundle 至少需要一个条目
bundle-entry-array = Bundle.entry 必须是数组
bundle-duplicate-full-url = fullUrl '{ $full_url }' 也被 Bundle.entry[{ $first }] 使用
bundle-entry-request = 每个条目都需要 request
bundle-entry-method = request.method 必须是 GET、HEAD、POST、PUT、PATCH 或 DELETE
bundle-entry-url = request.url 为必填项
bundle-entry-resource = POST、PUT 和 PATCH 条目需要资源
bundle-entry-if-match = request.ifMatch 必须是版本 ETag
bundle-entry-url-form = request.url '{ $url }' 必须是 Type/id 或 Type?搜索
bundle-post-url = POST 条目的 request.url 必须是资源类型，而不是 '{ $url }'

## references

bundle-reference-unknown = 引用 '{ $reference }' 不指向此 Bundle 中的任何条目

## conditional

if-none-exist-entry-multiple-matches = ifNoneExist '{ $query }' 匹配到多个 { $resource_type }

## references

conditional-reference-none = 条件引用 '{ $reference }' 没有匹配到任何资源
conditional-reference-many = 条件引用 '{ $reference }' 匹配到多个资源

## operations

parameter-not-integer = { $name } 必须是 valueInteger
parameter-not-boolean = { $name } 必须是 valueBoolean
parameter-not-instant = { $name } 必须是带时区偏移的日期时间，例如 2027-03-15T09:00:00-07:00
parameter-required = 参数 '{ $name }' 为必填项

## consults

find-referral-reference = referral 必须是 ServiceRequest 引用，而不是 '{ $referral }'
find-duration = minutesDuration 必须在 10 到 240 分钟之间
find-window = latest 必须在 earliest 之后为会诊留出足够时间

## history

history-invalid-value = { $key } 的值 '{ $value }' 无效
history-unsupported-parameter = 历史记录不支持参数 '{ $key }'

## general

version-not-known = { $reference } 没有版本 { $version }
version-deleted = { $reference } 的版本 { $version } 记录的是其删除

## search

search-post-form = POST _search 接受 application/x-www-form-urlencoded

## operations

operation-media = 操作接受 FHIR Parameters 资源（JSON 或 XML）
operation-not-parameters = 操作接受 Parameters 资源
operation-unknown = 未知的操作 '{ $operation }'

## validation

validate-media = $validate 接受 FHIR 资源或 Parameters（JSON 或 XML）
validate-no-resource = $validate 需要一个资源：请求体，或 Parameters 中的 'resource'
validate-wrong-type = 对 { $expected } 的 $validate 收到了 { $found }
validate-no-issues = 未发现问题

## scorecard

scorecard-parameter = $partner-scorecard 接受 partner、period 和 _format，而不是 '{ $parameter }'
scorecard-date = '{ $value }' 不是 FHIR 日期（2026、2026-11、2026-11-29）
scorecard-period-reversed = 时间段 '{ $period }' 的结束早于开始
scorecard-own-only = 合作机构只能查看自己的评分卡
scorecard-name-partner = 请指明合作机构：partner=ID
scorecard-unknown-partner = 未配置合作机构 '{ $partner }'
scorecard-staff-roles = 合作机构评分卡仅供协调员和管理员查看

## notifications

consult-description = 第二诊疗意见远程会诊
consult-reminder = 提醒：您的转诊的远程会诊将于 { $start } 开始。
subscription-configured-reason = 转诊 Task 的变更，来自合作机构的 notification_endpoint
subscription-handshake-failed = 握手失败：{ $reason }

## access

auth-no-token = 缺少持有者令牌（Authorization: Bearer <token>）
auth-invalid-token = 令牌无效：{ $reason }
auth-scope = 该令牌不允许对 { $resource_type } 执行 { $interaction }
auth-certificate-mismatch = 客户端证书不匹配：{ $reason }

## validation rules

rule-constraint = 约束 { $key } 未满足：{ $human }
rule-constraint-not-evaluated = 无法评估约束 { $key }
rule-cardinality = { $element } 出现 { $found } 次；允许 { $min } 到 { $max } 次
rule-slice = { $element } 的切片“{ $name }”包含 { $found } 项；允许 { $min } 到 { $max } 项
rule-closed-slicing = 此项不匹配 { $profile } 封闭切片中的任何切片
