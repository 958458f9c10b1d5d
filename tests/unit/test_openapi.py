"""The OpenAPI description (squad.http.openapi) is valid, complete and true to the code.

"True to the code" is checked three ways: the error codes and statuses are those of the one
table in squad.http.errors, which every answering module reads (checked on their syntax trees,
so no code can be spelt outside it), real answer bodies are validated against the component
schemas, and the sign-up schema is shown to accept exactly what
:func:`squad.http.validation.parse_signup` accepts, field by field.
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
from squad.http.errors import ERRORS, RETRY_AFTER_SECONDS, ErrorKind, render_error, write_error
from squad.http.fields import FIELDS, PASSWORD, SIGNUP_FIELDS
from squad.http.openapi import OPENAPI, openapi_json
from squad.http.routes import ROUTE_TEMPLATES, SquadAPI, path_template
from squad.http.site import (
    BAD_REQUEST,
    HEADERS_TOO_LARGE,
    TOO_LARGE,
    TOO_MANY_CONNECTIONS,
    URI_TOO_LONG,
    request_timeout_answer,
)
from squad.http.validation import InvalidRequest, check_content_type, parse_signup
from squad.signup import SignUp
from squad.storage.documents import bson_now, new_user_document, user_json
from tests.hostile_corpus import CASES
from tests.signups import USER_FIELDS, VALID_SIGNUP

HTTP_PACKAGE = Path(squad.__file__).parent / "http"
# The modules that answer errors, as opposed to the table itself and the document describing it.
ANSWERING_MODULES = ("validation", "idempotency", "routes", "site")

# The API's routes and the answers each must document.
PUBLIC_ROUTES: dict[tuple[str, str], set[str]] = {
    ("/health", "get"): {"204"},
    ("/ready", "get"): {"204", "503"},
    ("/users", "post"): {"201", "400", "413", "415", "422", "503"},
    ("/users/{id}", "get"): {"200", "400", "404", "503"},
    ("/collections", "delete"): {"204", "404"},
    ("/metrics", "get"): {"200"},
    ("/openapi.json", "get"): {"200"},
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
# A machine code named in a description: "(overloaded)" or "(invalid_id, field _id)".
CODE_IN_PROSE = re.compile(r"\(([a-z][a-z0-9]*(?:_[a-z0-9]+)*)[),:]")
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


def kinds_named(tree: ast.Module) -> list[str]:
    """The members of ErrorKind that ``tree`` refers to (``ErrorKind.NAME``), in order."""
    return [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ErrorKind"
    ]


def resolved(answer: dict[str, Any]) -> dict[str, Any]:
    """A documented answer, following its $ref into the components if it has one."""
    if "$ref" not in answer:
        return answer
    components: Any = OPENAPI["components"]
    found: dict[str, Any] = components["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return found


def body_of(raw: bytes) -> Any:
    """The JSON body of a whole HTTP answer written by hand."""
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


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
        self.assertEqual(set(described), set(PUBLIC_ROUTES))
        for route, statuses in PUBLIC_ROUTES.items():
            documented = set(described[route]["responses"])
            self.assertEqual(statuses - documented, set(), route)

    def test_the_klein_routes_are_the_described_ones(self) -> None:
        """The document describes exactly the routes squad.http.routes serves, each under the
        template its metric label uses, with the same methods."""
        served = {
            (path_template(rule.rule), method.lower())
            for rule in SquadAPI.app.url_map.iter_rules()
            for method in set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        }
        described = {(path, method) for path, method, _ in operations()}
        self.assertEqual(served, described)
        paths: Any = OPENAPI["paths"]
        self.assertEqual(set(ROUTE_TEMPLATES), set(paths))

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

    def test_every_operation_documents_the_answers_to_any_request(self) -> None:
        """Every operation documents what the site answers before any route runs: 408 for a
        request too slow to arrive, 414 for a request line too long, 431 for headers too
        large, 503 at the connection cap; each description names its code."""
        for path, method, operation in operations():
            for kind in (
                ErrorKind.REQUEST_TIMEOUT,
                ErrorKind.URI_TOO_LONG,
                ErrorKind.HEADERS_TOO_LARGE,
                ErrorKind.TOO_MANY_CONNECTIONS,
            ):
                answer = operation["responses"].get(str(kind.status))
                self.assertIsNotNone(answer, (path, method, kind))
                self.assertIn(f"({kind.code}", resolved(answer)["description"], (path, method))

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
        self.error = component("Error")["properties"]["error"]

    def test_enum_is_the_table(self) -> None:
        """The Error schema's enum lists exactly the codes of squad.http.errors' table, in its
        order."""
        self.assertEqual(self.error["enum"], [kind.code for kind in ErrorKind])

    def test_description_gives_each_code_its_status(self) -> None:
        """The error property's description names every code with the status of the table."""
        for kind in ErrorKind:
            self.assertIn(f"{kind.code} ({kind.status})", self.error["description"])

    def test_documented_answers_name_codes_of_their_status(self) -> None:
        """Every code an answer's description names is a code of the table whose status is the
        one the answer is documented under, so prose cannot name a code the table lacks."""
        named = 0
        for path, method, operation in operations():
            for status, declared in operation["responses"].items():
                description = resolved(declared)["description"]
                for code in CODE_IN_PROSE.findall(description):
                    named += 1
                    self.assertIn(code, ERRORS, (path, method, status))
                    self.assertEqual(str(ERRORS[code].status), status, (path, method, code))
        self.assertGreaterEqual(named, 10)

    def test_no_module_spells_a_code(self) -> None:
        """No module of squad.http but the table writes a machine code as a string: every
        other one names a member of ErrorKind, so a code cannot exist in one place only."""
        for path in sorted(HTTP_PACKAGE.glob("*.py")):
            if path.stem == "errors":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    self.assertNotIn(node.value, ERRORS, path.name)

    def test_answers_are_given_by_kind(self) -> None:
        """Every refusal and error answer in the answering modules is built from a kind of the
        table, never from a status and a code written at the call."""
        kind_at = {
            "InvalidRequest": 0,
            "write_error": 1,
            "raw_error": 0,
            "render_error": 0,
            "_refuse_field": 0,
            "_refuse_key": 1,
        }
        calls = 0
        for module in ANSWERING_MODULES:
            for function, position in kind_at.items():
                for call in calls_to(module_tree(module), function):
                    calls += 1
                    argument = call.args[position]
                    self.assertFalse(isinstance(argument, ast.Constant), (module, function))
        self.assertGreater(calls, 40)

    def test_every_kind_is_answered(self) -> None:
        """Each kind of the table is given by some answering module, so the document lists no
        code the service never answers."""
        used = {name for module in ANSWERING_MODULES for name in kinds_named(module_tree(module))}
        self.assertEqual({kind.name for kind in ErrorKind} - used, set())
        self.assertEqual(used - {kind.name for kind in ErrorKind}, set())

    def test_validation_docstring_lists_what_it_raises(self) -> None:
        """squad.http.validation's list of rules names, in the table's order, exactly the kinds
        the module raises."""
        doc = validation.__doc__ or ""
        listed = [
            token
            for token in re.findall(r"``([A-Z0-9_]+)``", doc[doc.index("The rules") :])
            if token in ErrorKind.__members__
        ]
        raised = set(kinds_named(module_tree("validation")))
        self.assertEqual(listed, [kind.name for kind in ErrorKind if kind.name in raised])

    def test_hostile_corpus_codes(self) -> None:
        """Every refusal the hostile corpus expects uses a code of the table with its status."""
        for case in CASES:
            self.assertIn(case.code, ERRORS, case.name)
            self.assertEqual(ERRORS[case.code].status, case.status, case.name)


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
        self.assertEqual(set(schema["required"]), USER_FIELDS)
        self.assertEqual(set(schema["properties"]), USER_FIELDS)
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
        """The answer to every refusal squad.http.validation makes for the hostile corpus has a
        valid Error body."""
        for case in CASES:
            try:
                check_content_type(case.content_type)
                parse_signup(case.body)
            except InvalidRequest as refused:
                body = json.loads(
                    render_error(refused.kind, refused.message, field=refused.field).body
                )
                self.validator.validate(body)
                self.assertEqual(body["error"], case.code)
            else:
                self.fail(f"{case.name} was accepted")

    def test_every_kind_renders_a_valid_error(self) -> None:
        """Every kind's answer, with its own sentence or another, with and without a field, has
        a valid Error body."""
        for kind in ErrorKind:
            self.validator.validate(json.loads(render_error(kind).body))
            self.validator.validate(json.loads(render_error(kind, "Bad.", field="email").body))

    def test_route_error_answers_validate(self) -> None:
        """write_error's bodies are valid Errors, and its 503s carry Retry-After as the
        document says."""
        request: Any = DummyRequest([b"users"])
        body = write_error(request, ErrorKind.DATABASE_UNAVAILABLE, "Not now.")
        self.validator.validate(json.loads(body))
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"retry-after"),
            [str(RETRY_AFTER_SECONDS).encode("ascii")],
        )
        request = DummyRequest([b"users", b"x"])
        body = write_error(request, ErrorKind.INVALID_ID, field="_id")
        self.validator.validate(json.loads(body))

    def test_raw_answers_validate(self) -> None:
        """The answers squad.http.site writes straight to the socket (413, 400, 408, 414, 431,
        503) have valid Error bodies."""
        for raw in (
            TOO_LARGE,
            BAD_REQUEST,
            TOO_MANY_CONNECTIONS,
            URI_TOO_LONG,
            HEADERS_TOO_LARGE,
            request_timeout_answer(10.0),
        ):
            self.validator.validate(body_of(raw))

    def test_example_is_a_real_refusal(self) -> None:
        """The Error schema's example is exactly what a sign-up with a too-short password gets."""
        (example,) = component("Error")["examples"]
        short = "p" * (PASSWORD.min_length - 1)
        try:
            parse_signup(json.dumps({**VALID_SIGNUP, "password": short}).encode("utf-8"))
        except InvalidRequest as error:
            refused = error
        else:
            self.fail("a too-short password was accepted")
        self.assertEqual(
            json.loads(render_error(refused.kind, refused.message, field=refused.field).body),
            example,
        )

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
# Bidirectional controls, and the characters just outside their two ranges.
_BIDI = "\u202a\u202e\u2066\u2069\u2065\u206a\u200f"
_SPACES = " \t\n\u00a0\u1680\u2000\u2028\u202f\u3000\ufeff\u200b\x1c\x85"
_names = (
    st.text(max_size=110)
    | st.text(alphabet="Ab\u00e9\u4e2d\U0001f600\x00\x7f\x9f" + _SPACES + _BIDI, max_size=8)
    | st.sampled_from(
        ["", "A" * 100, "A" * 101, "Mary Ann", " Ada", "Ada ", "\ufeffAda", "Ada\u202eecalevoL"]
    )
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

    def test_fields_and_limits_are_the_rules(self) -> None:
        """The SignUp schema has the five fields, all required, nothing else, each with the
        lengths and the pattern of its rule in squad.http.fields (an absent minLength is JSON
        Schema's 0)."""
        schema = component("SignUp")
        self.assertEqual(schema["required"], list(FIELDS))
        self.assertIs(schema["additionalProperties"], False)
        described = {
            name: (field.get("minLength", 0), field["maxLength"], field["pattern"])
            for name, field in schema["properties"].items()
        }
        self.assertEqual(
            described,
            {rule.name: (rule.min_length, rule.max_length, rule.pattern) for rule in SIGNUP_FIELDS},
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
