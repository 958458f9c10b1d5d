"""The OpenAPI description (squad.http.openapi) is valid, complete and true to the code.

"True to the code" is checked three ways: the error codes and statuses are read from the
modules that answer them (by their syntax tree, so a new code cannot be forgotten), real answer
bodies are validated against the component schemas, and the sign-up schema is shown to accept
exactly what :func:`squad.http.validation.parse_signup` accepts, field by field.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

import squad
from squad.http import validation
from squad.http.errors import RETRY_AFTER_SECONDS, write_error
from squad.http.openapi import ERROR_CODES, OPENAPI, openapi_json
from squad.http.routes import SquadAPI
from squad.http.site import TOO_LARGE
from squad.http.validation import InvalidRequest, SignUp, check_content_type, parse_signup
from squad.storage.documents import bson_now, new_user_document, user_json
from tests.hostile_corpus import CASES, VALID_SIGNUP

HTTP_PACKAGE = Path(squad.__file__).parent / "http"

# The contract's routes (CONTRACT.md, "HTTP API") and the answers each must document.
CONTRACT_ROUTES: dict[tuple[str, str], set[str]] = {
    ("/health", "get"): {"204"},
    ("/ready", "get"): {"204", "503"},
    ("/users", "post"): {"201", "400", "413", "415", "422", "503"},
    ("/users/{id}", "get"): {"200", "400", "404", "503"},
    ("/collections", "delete"): {"204", "404"},
    ("/metrics", "get"): {"200"},
    ("/openapi.json", "get"): {"200"},
}
# The user's fields, as CONTRACT.md lists them for the 201 answer.
CONTRACT_USER_FIELDS = {
    "_id",
    "firstName",
    "lastName",
    "email",
    "username",
    "processed",
    "date_created",
    "date_updated",
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
DOCUMENT_URI = "urn:squad:openapi"

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ecma_pattern(
    validator: Any, pattern: str, instance: object, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """The ``pattern`` keyword as JSON Schema means it (ECMA-262), not as Python's ``re`` reads
    it: a final ``$`` ends the string, it does not also match before a trailing newline."""
    if not isinstance(instance, str):
        return
    python = (
        pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    )
    if re.search(python, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": ecma_pattern})


def schema_validator(component: str) -> Any:
    """A JSON Schema validator for one component schema, resolving references in the document."""
    resource: Resource[Any] = Resource.from_contents(OPENAPI, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    return EcmaValidator(
        {"$ref": f"{DOCUMENT_URI}#/components/schemas/{component}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def component(name: str) -> dict[str, Any]:
    components: Any = OPENAPI["components"]
    schema: dict[str, Any] = components["schemas"][name]
    return schema


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    paths: Any = OPENAPI["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def module_tree(name: str) -> ast.Module:
    return ast.parse((HTTP_PACKAGE / f"{name}.py").read_text(encoding="utf-8"))


def calls_to(tree: ast.Module, function: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func
            name = called.id if isinstance(called, ast.Name) else getattr(called, "attr", None)
            if name == function:
                yield node


def literal(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def status_and_code(call: ast.Call, status_at: int, code_at: int) -> tuple[object, object]:
    return literal(call.args[status_at]), literal(call.args[code_at])


class DocumentTests(SynchronousTestCase):
    def test_valid_openapi_3_1(self) -> None:
        """The document validates against the OpenAPI 3.1 schema (openapi-spec-validator)."""
        self.assertTrue(str(OPENAPI["openapi"]).startswith("3.1."))
        validate(OPENAPI, cls=OpenAPIV31SpecValidator)

    def test_validator_is_not_vacuous(self) -> None:
        """The same check refuses a broken copy, so the test above really checks something."""
        broken: Any = copy.deepcopy(OPENAPI)
        del broken["paths"]["/health"]["get"]["responses"]["204"]["description"]
        self.assertRaises(OpenAPIValidationError, validate, broken, cls=OpenAPIV31SpecValidator)

    def test_every_reference_resolves(self) -> None:
        """Every $ref points at something in the document (generators choke on dangling ones)."""
        targets: list[str] = []

        def walk(node: object) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("$ref"), str):
                    targets.append(node["$ref"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(OPENAPI)
        self.assertTrue(targets)
        for target in targets:
            self.assertTrue(target.startswith("#/"), target)
            node: Any = OPENAPI
            for part in target[2:].split("/"):
                self.assertIn(part, node, target)
                node = node[part]

    def test_serialised_once(self) -> None:
        """openapi_json() is the document as UTF-8 JSON, built once and then reused."""
        first = openapi_json()
        self.assertEqual(json.loads(first), json.loads(json.dumps(OPENAPI)))
        self.assertIs(openapi_json(), first)

    def test_operation_ids_are_unique(self) -> None:
        """Each operation has its own operationId, which client generators use as a name."""
        ids = [operation["operationId"] for _, _, operation in operations()]
        self.assertEqual(len(ids), len(set(ids)))


class RouteTests(SynchronousTestCase):
    def test_contract_routes_and_answers(self) -> None:
        """Every route of the contract is described with every answer the contract names, and
        no route outside the contract is."""
        described = {(path, method): op for path, method, op in operations()}
        self.assertEqual(set(described), set(CONTRACT_ROUTES))
        for route, statuses in CONTRACT_ROUTES.items():
            documented = set(described[route]["responses"])
            self.assertEqual(statuses - documented, set(), route)

    def test_every_klein_route_is_described(self) -> None:
        """Each route squad.http.routes serves appears in the document, with the same methods."""
        described = {(re.sub(r"\{[^}]+\}", "{}", path), method) for path, method, _ in operations()}
        for rule in SquadAPI.app.url_map.iter_rules():
            template = re.sub(r"<[^>]+>", "{}", rule.rule)
            for method in set(rule.methods or ()) - {"HEAD", "OPTIONS"}:
                self.assertIn((template, method.lower()), described, rule.rule)

    def test_error_answers_use_the_error_schema(self) -> None:
        """Every 4xx and 5xx answer has a JSON body in the Error schema, and every 503 a
        Retry-After header."""
        components: Any = OPENAPI["components"]
        for path, method, operation in operations():
            for status, declared in operation["responses"].items():
                answer = declared
                if "$ref" in declared:
                    answer = components["responses"][declared["$ref"].rsplit("/", 1)[1]]
                if int(status) < 400:
                    continue
                schema = answer["content"]["application/json"]["schema"]
                self.assertEqual(schema, {"$ref": "#/components/schemas/Error"}, (path, method))
                if status == "503":
                    self.assertIn("Retry-After", answer["headers"], (path, method))

    def test_created_answer_has_location(self) -> None:
        """The 201 of POST /users declares its Location header and the User body."""
        paths: Any = OPENAPI["paths"]
        created = paths["/users"]["post"]["responses"]["201"]
        self.assertIn("Location", created["headers"])
        self.assertEqual(
            created["content"]["application/json"]["schema"],
            {"$ref": "#/components/schemas/User"},
        )

    def test_idempotency_key_header(self) -> None:
        """POST /users declares the optional Idempotency-Key header, at most 255 printable
        characters."""
        components: Any = OPENAPI["components"]
        parameter = components["parameters"]["IdempotencyKey"]
        self.assertEqual((parameter["name"], parameter["in"]), ("Idempotency-Key", "header"))
        self.assertFalse(parameter["required"])
        self.assertEqual(parameter["schema"]["maxLength"], 255)
        pattern = re.compile(parameter["schema"]["pattern"])
        self.assertIsNotNone(pattern.search("9b2f6a3e-4d1c 4f7e~!"))
        self.assertIsNone(pattern.search("tab\there"))
        self.assertIsNone(pattern.search("caf\u00e9"))


class ErrorCodeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.enum = set(component("Error")["properties"]["error"]["enum"])

    def test_enum_is_the_code_table(self) -> None:
        """The Error schema's enum lists exactly the codes of squad.http.openapi.ERROR_CODES."""
        self.assertEqual(self.enum, set(ERROR_CODES))

    def test_codes_raised_by_validation(self) -> None:
        """Every machine code squad.http.validation can raise (any snake_case string passed to a
        call in its source) is in the enum."""
        raised = {
            argument.value
            for call in ast.walk(module_tree("validation"))
            if isinstance(call, ast.Call)
            for argument in call.args
            if isinstance(argument, ast.Constant)
            and isinstance(argument.value, str)
            and SNAKE_CASE.fullmatch(argument.value)
        }
        self.assertGreaterEqual(len(raised), 20)
        self.assertEqual(raised - self.enum, set())

    def test_codes_in_the_validation_docstring(self) -> None:
        """Every code in squad.http.validation's table of rules is in the enum, with its status."""
        doc = validation.__doc__ or ""
        table = doc[doc.index("The rules") : doc.index("Fields are checked")]
        documented = {
            token for token in re.findall(r"``([^`]+)``", table) if SNAKE_CASE.fullmatch(token)
        }
        self.assertGreaterEqual(len(documented), 20)
        self.assertEqual(documented - self.enum, set())
        for status, code in re.findall(r"(\d{3}) ``([a-z0-9_]+)``", table):
            self.assertEqual(ERROR_CODES[code], int(status), code)

    def test_statuses_of_validation_refusals(self) -> None:
        """Each direct InvalidRequest(status, code, ...) in squad.http.validation carries the status
        the table gives its code."""
        found = 0
        for call in calls_to(module_tree("validation"), "InvalidRequest"):
            status, code = status_and_code(call, 0, 1)
            if isinstance(status, int) and isinstance(code, str):
                found += 1
                self.assertEqual(ERROR_CODES[code], status, code)
        self.assertGreater(found, 5)

    def test_codes_answered_by_the_routes(self) -> None:
        """Every write_error(request, status, code, ...) in squad.http.routes, and every raw answer
        of
        squad.http.site (413, 400, 408, 503), uses a code of the enum with the status the table
        gives
        it."""
        answered = [
            status_and_code(call, 1, 2) for call in calls_to(module_tree("routes"), "write_error")
        ]
        answered += [
            status_and_code(call, 0, 2)
            for name in ("_raw_error", "_raw_answer")
            for call in calls_to(module_tree("site"), name)
            # _raw_error only passes its own arguments on to _raw_answer.
            if isinstance(call.args[0], ast.Constant)
        ]
        self.assertGreaterEqual(len(answered), 5)
        for status, code in answered:
            self.assertIsInstance(code, str)
            self.assertIn(code, self.enum)
            self.assertEqual(ERROR_CODES[str(code)], status, code)

    def test_hostile_corpus_codes(self) -> None:
        """Every refusal the hostile corpus expects uses a code of the enum with its status."""
        for case in CASES:
            self.assertIn(case.code, self.enum, case.name)
            self.assertEqual(ERROR_CODES[case.code], case.status, case.name)


class UserSchemaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.validator = schema_validator("User")
        self.signup = SignUp(
            first_name="Zoë",
            last_name="O'Brien-Łukasiewicz",
            email="zoe+signup@example.com",
            username="zoe.ob",
            password="correct horse battery staple",
        )

    def test_required_fields_are_the_contracts(self) -> None:
        """The User schema requires and allows exactly the contract's fields: no password, no
        hash, no internal bookkeeping."""
        schema = component("User")
        self.assertEqual(set(schema["required"]), CONTRACT_USER_FIELDS)
        self.assertEqual(set(schema["properties"]), CONTRACT_USER_FIELDS)
        self.assertIs(schema["additionalProperties"], False)

    def test_new_user_answer_validates(self) -> None:
        """The body of a 201 (user_json of a new user document) is a valid User."""
        document = new_user_document(ObjectId(), self.signup, bson_now(1_710_322_200.123))
        body = json.loads(user_json(document))
        self.validator.validate(body)
        self.assertIs(body["processed"], False)

    def test_stored_user_answer_validates(self) -> None:
        """The body of GET /users/{id} for a document read back from the database (naive UTC
        dates, the password hash and slow-step bookkeeping beside it) is a valid User."""
        document = new_user_document(ObjectId(), self.signup, bson_now(0))
        document.update(
            processed=True,
            date_created=datetime(2024, 3, 13, 9, 30, 0, 123000),  # naive, as txmongo reads it
            date_updated=datetime(2024, 3, 13, 9, 30, 7, 5000, tzinfo=UTC),
            password_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            verification={"state": "retrying", "attempts": 2},
        )
        self.validator.validate(json.loads(user_json(document)))

    def test_schema_refuses_leaks_and_bad_dates(self) -> None:
        """The User schema would catch an answer carrying the password, a short id or a date
        that is not ISO 8601, so the validations above can fail."""
        body = json.loads(user_json(new_user_document(ObjectId(), self.signup, bson_now(0))))
        self.validator.validate(body)
        for change in (
            {"password": "correct horse battery staple"},
            {"password_hash": "$argon2id$..."},
            {"_id": "65f1c0ffee"},
            {"date_updated": "yesterday"},
            {"processed": "false"},
        ):
            self.assertFalse(self.validator.is_valid({**body, **change}), change)


class ErrorSchemaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.validator = schema_validator("Error")

    def test_every_hostile_refusal_validates(self) -> None:
        """The body of every refusal squad.http.validation makes for the hostile corpus is a valid
        Error."""
        for case in CASES:
            try:
                check_content_type(case.content_type)
                parse_signup(case.body)
            except InvalidRequest as refused:
                self.validator.validate(refused.body())
                self.assertEqual(refused.body()["error"], case.code)
            else:
                self.fail(f"{case.name} was accepted")

    def test_constructed_refusals_validate(self) -> None:
        """InvalidRequest bodies, with and without a field, are valid Errors for every code."""
        for code, status in ERROR_CODES.items():
            self.validator.validate(InvalidRequest(status, code, "Some sentence.").body())
            self.validator.validate(InvalidRequest(status, code, "Bad.", "email").body())

    def test_route_error_answers_validate(self) -> None:
        """write_error's bodies are valid Errors, and its 503s carry Retry-After as the
        document says."""
        request: Any = DummyRequest([b"users"])
        body = write_error(request, 503, "database_unavailable", "Not now.")
        self.validator.validate(json.loads(body))
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"retry-after"),
            [str(RETRY_AFTER_SECONDS).encode("ascii")],
        )
        request = DummyRequest([b"users", b"x"])
        body = write_error(request, 400, "invalid_id", "Bad id.", field="_id")
        self.validator.validate(json.loads(body))

    def test_raw_too_large_answer_validates(self) -> None:
        """The 413 written straight to the socket by squad.http.site has a valid Error body."""
        self.validator.validate(json.loads(TOO_LARGE.split(b"\r\n\r\n", 1)[1]))

    def test_unknown_code_is_refused(self) -> None:
        """An error code missing from the table fails validation, so new codes get documented."""
        self.assertFalse(self.validator.is_valid({"error": "oops", "message": "Oops."}))


# Field values that probe each rule's edges, for the agreement tests below.
_ATEXT = "abcXYZ0189!#$%&'*+/=?^_`{|}~-"
_local_parts = st.text(alphabet=_ATEXT + '.." @', min_size=0, max_size=70)
_labels = st.text(alphabet="abZ09-", min_size=0, max_size=65)
_tlds = st.sampled_from(["com", "c", "io", "XN--P1AI", "xn--", "xn--p1ai", "c0m", "123"])
_domains = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(_labels, max_size=4), _tlds
)
_emails = (
    st.builds(lambda local, domain: f"{local}@{domain}", _local_parts, _domains)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "ada@example.com",
            "ADA@Example.COM",
            f"{'a' * 64}@example.com",
            f"{'a' * 65}@example.com",
            f"a@{'b' * 63}.{'c' * 63}.{'d' * 63}.{'e' * 57}.com",
            f"a@{'b' * 63}.{'c' * 63}.{'d' * 63}.{'e' * 58}.com",
            "a@b.c",
            "a@[127.0.0.1]",
            '"a b"@example.com',
            "a..b@example.com",
            "ad\u00e9@example.com",
            "a@example.com\n",
        ]
    )
)
_SPACES = " \t\n\u00a0\u1680\u2000\u2028\u202f\u3000\ufeff\u200b\x1c\x85"
_names = (
    st.text(max_size=110)
    | st.text(alphabet="Ab\u00e9\u4e2d\U0001f600\x00\x7f\x9f" + _SPACES, max_size=8)
    | st.sampled_from(["", "A" * 100, "A" * 101, "Mary Ann", " Ada", "Ada ", "\ufeffAda"])
)
_usernames = st.text(alphabet="aZ09._-\u00e9 \x00", max_size=36) | st.sampled_from(
    ["abc", "ab", "a" * 32, "a" * 33, "_abc", ".abc", "9lives"]
)
_passwords = (
    st.text(max_size=140)
    | st.text(alphabet="a \x00\u00e9", max_size=12)
    | st.sampled_from(["a" * 7, "a" * 8, "a" * 128, "a" * 129, "\U0001f600" * 128])
)


class SignUpSchemaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.validator = schema_validator("SignUp")

    def agrees(self, changes: dict[str, object]) -> None:
        """The schema accepts the body exactly when parse_signup does."""
        document = {**VALID_SIGNUP, **changes}
        try:
            parse_signup(json.dumps(document).encode("utf-8"))
        except InvalidRequest:
            accepted = False
        else:
            accepted = True
        self.assertEqual(self.validator.is_valid(document), accepted, document)

    def test_fields_and_limits_are_validations(self) -> None:
        """The SignUp schema has the five fields, all required, nothing else, and the length
        limits of squad.http.validation."""
        schema = component("SignUp")
        self.assertEqual(schema["required"], list(validation.FIELDS))
        self.assertEqual(set(schema["properties"]), set(validation.FIELDS))
        self.assertIs(schema["additionalProperties"], False)
        limits = {
            name: (field.get("minLength"), field.get("maxLength"))
            for name, field in schema["properties"].items()
        }
        names = (validation.NAME_MIN_LENGTH, validation.NAME_MAX_LENGTH)
        self.assertEqual(
            limits,
            {
                "firstName": names,
                "lastName": names,
                "email": (None, validation.EMAIL_MAX_LENGTH),
                "username": (validation.USERNAME_MIN_LENGTH, validation.USERNAME_MAX_LENGTH),
                "password": (validation.PASSWORD_MIN_LENGTH, validation.PASSWORD_MAX_LENGTH),
            },
        )

    def test_valid_signup_is_accepted(self) -> None:
        """The contract's example sign-up is valid."""
        self.validator.validate(VALID_SIGNUP)

    def test_hostile_json_objects_are_refused(self) -> None:
        """Every hostile corpus body that is a plain JSON value (strict, no duplicate keys) yet
        refused with 400 by squad is refused by the schema too."""

        def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
            if len({key for key, _ in pairs}) != len(pairs):
                raise ValueError("duplicate key")
            return dict(pairs)

        def no_constants(name: str) -> object:
            raise ValueError(name)

        checked = 0
        for case in CASES:
            if case.status != 400 or case.code == "nesting_too_deep":
                continue
            try:
                text = case.body.decode("utf-8")  # json.loads(bytes) would also take UTF-16
                value = json.loads(text, object_pairs_hook=unique, parse_constant=no_constants)
            except ValueError:
                continue  # not UTF-8 JSON at all: no schema can say anything about it
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                continue  # a lone surrogate: JSON Schema patterns cannot express that rule
            checked += 1
            self.assertFalse(self.validator.is_valid(value), case.name)
        self.assertGreater(checked, 30)

    @FUZZ
    @given(first=_names, last=_names)
    def test_names_agree(self, first: str, last: str) -> None:
        """For firstName and lastName the schema accepts exactly what parse_signup accepts."""
        self.agrees({"firstName": first})
        self.agrees({"lastName": last})

    @FUZZ
    @given(email=_emails)
    def test_emails_agree(self, email: str) -> None:
        """For email the schema accepts exactly what parse_signup accepts."""
        self.agrees({"email": email})

    @FUZZ
    @given(username=_usernames)
    def test_usernames_agree(self, username: str) -> None:
        """For username the schema accepts exactly what parse_signup accepts."""
        self.agrees({"username": username})

    @FUZZ
    @given(password=_passwords)
    def test_passwords_agree(self, password: str) -> None:
        """For password the schema accepts exactly what parse_signup accepts."""
        self.agrees({"password": password})
