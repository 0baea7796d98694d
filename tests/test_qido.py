"""QIDO-RS: searching studies, series and instances the way a viewer or PACS does."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select

from service.auth.roles import Role
from service.orm import AccessLogEntry
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import make_cr, multipart_body, rg1_files, stow_headers, to_bytes

PATIENT_NAME, PATIENT_ID = "00100010", "00100020"
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
STUDY_DATE, MODALITIES, RETRIEVE_URL = "00080020", "00080061", "00081190"
STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES = "00201206", "00201208", "00201209"
STUDY_DESCRIPTION, OPERATORS_NAME, IMAGE_COMMENTS = "00081030", "00081070", "00204000"
INSTANCE_NUMBER, MODALITY, CHARSET = "00200013", "00080060", "00080005"

Params = dict[str, str] | list[tuple[str, Any]]


def store(client: TestClient, token: str, datasets: list[Dataset]) -> None:
    body = multipart_body([to_bytes(ds) for ds in datasets])
    response = client.post("/dicomweb/studies", content=body, headers=stow_headers(token))
    assert response.status_code == 200, response.text


def search(client: TestClient, token: str, path: str, params: Params | None = None, **headers: str):
    return client.get(
        f"/dicomweb{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}", **headers},
    )


def found(client: TestClient, token: str, path: str, params: Params | None = None) -> list[Any]:
    response = search(client, token, path, params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    results = response.json()
    assert isinstance(results, list)
    return results


def values(results: list[Any], tag: str) -> list[Any]:
    """The first value of a tag in each result (None where it is empty)."""
    return [r[tag].get("Value", [None])[0] for r in results]


def refused(client: TestClient, token: str, path: str, params: Params) -> str:
    response = search(client, token, path, params)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "BadRequest"
    detail: str = response.json()["detail"]
    return detail


@pytest.fixture
def uids() -> dict[str, str]:
    names = ("A", "A_CR", "A_DX", "B", "C", "D", "A_CR_1", "A_CR_2")
    return {name: generate_uid() for name in names}


@pytest.fixture
def stored(client: TestClient, integration_token: str, uids: dict[str, str]) -> dict[str, str]:
    """Four studies: A (CR series of two + DX series of one), B, C and D (one image each)."""
    study_a: dict[str, Any] = dict(
        study_uid=uids["A"],
        patient_id="PID-A",
        patient_name="Doe^Jane",
        study_date="20200315",
        StudyTime="083000",
        AccessionNumber="ACC-A",
        ReferringPhysicianName="House^Gregory",
        StudyDescription="Chest PA",
    )
    store(
        client,
        integration_token,
        [
            make_cr(
                series_uid=uids["A_CR"],
                sop_uid=uids["A_CR_1"],
                OperatorsName="Tech^One",
                **study_a,
            ),
            make_cr(series_uid=uids["A_CR"], sop_uid=uids["A_CR_2"], InstanceNumber=2, **study_a),
            make_cr(series_uid=uids["A_DX"], modality="DX", SeriesNumber=2, **study_a),
            make_cr(
                study_uid=uids["B"],
                patient_id="PID-B",
                patient_name="DOE^JOHN",
                study_date="20210620",
                StudyTime="141500",
            ),
            make_cr(
                study_uid=uids["C"],
                patient_id="AB_1",
                patient_name="Smith^Anna",
                study_date="20191231",
                modality="DX",
            ),
            make_cr(
                study_uid=uids["D"],
                patient_id="ABX1",
                patient_name="Smyth^Ann",
                study_date="20190601",
            ),
        ],
    )
    return uids


def study_uids(client: TestClient, token: str, params: Params, stored: dict[str, str]) -> list[str]:
    """The names (A, B, ...) of the studies a search finds, in answer order."""
    names = {uid: name for name, uid in stored.items()}
    return [names[uid] for uid in values(found(client, token, "/studies", params), STUDY_UID)]


def test_rg1_files_are_found_by_patient_id(client: TestClient, integration_token: str) -> None:
    files = rg1_files()
    body = multipart_body([p.read_bytes() for p in files.values()])
    stored = client.post("/dicomweb/studies", content=body, headers=stow_headers(integration_token))
    assert stored.status_code == 200, stored.text
    studies = found(client, integration_token, "/studies", {"PatientID": "9RG1"})
    assert values(studies, PATIENT_NAME) == [{"Alphabetic": "CompressedSamples^RG1"}]
    assert values(studies, STUDY_INSTANCES) == [3]  # RG1_UNCI and RG1_J2KI are one instance
    instances = found(client, integration_token, "/instances", {"PatientID": "9RG1"})
    assert values(instances, INSTANCE_NUMBER) == [1, 2, 3]
    assert {r[SOP_UID]["Value"][0] for r in instances} == {
        "1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457",
        "1.3.6.1.4.1.5962.1.1.9.1.2.20040826185059.5457",
        "1.3.6.1.4.1.5962.1.1.9.1.3.20040826185059.5457",
    }


def test_all_studies_newest_first_with_default_attributes(
    client: TestClient, integration_token: str, stored: dict[str, str]
) -> None:
    studies = found(client, integration_token, "/studies")
    assert values(studies, STUDY_DATE) == ["20210620", "20200315", "20191231", "20190601"]
    a = studies[1]
    assert a[PATIENT_NAME] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert a[PATIENT_ID] == {"vr": "LO", "Value": ["PID-A"]}
    assert a["00080050"] == {"vr": "SH", "Value": ["ACC-A"]}
    assert a["00080090"]["Value"] == [{"Alphabetic": "House^Gregory"}]
    assert a["00080030"]["Value"] == ["083000"]
    assert a[MODALITIES] == {"vr": "CS", "Value": ["CR", "DX"]}
    assert a[STUDY_SERIES] == {"vr": "IS", "Value": [2]}
    assert a[STUDY_INSTANCES] == {"vr": "IS", "Value": [3]}
    assert a[CHARSET]["Value"] == ["ISO_IR 192"]
    assert a[RETRIEVE_URL]["Value"] == [f"http://testserver/dicomweb/studies/{stored['A']}"]
    assert list(a) == sorted(a)  # DICOM JSON is ordered by tag
    assert STUDY_DESCRIPTION not in a  # not a default; includefield asks for it


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"PatientID": "PID-A"}, ["A"]),
        ({"00100020": "PID-B"}, ["B"]),  # by tag
        ({"PatientID": "pid-a"}, []),  # IDs match case-sensitively
        ({"PatientID": "PID-*"}, ["B", "A"]),
        ({"PatientID": "AB_*"}, ["C"]),  # '_' is literal, not SQL's any-character
        ({"PatientID": "AB?1"}, ["C", "D"]),
        ({"PatientName": "doe*"}, ["B", "A"]),  # names match ignoring case
        ({"PatientName": "DOE^JANE"}, ["A"]),
        ({"PatientName": "Sm?th*"}, ["C", "D"]),
        ({"PatientName": "*"}, ["B", "A", "C", "D"]),
        ({"PatientName": "Sm_th*"}, []),  # '_' is literal in names too
        ({"ReferringPhysicianName": "house*"}, ["A"]),
        ({"StudyDate": "20200315"}, ["A"]),
        ({"StudyDate": "20200101-20201231"}, ["A"]),
        ({"StudyDate": "-20191231"}, ["C", "D"]),
        ({"StudyDate": "20200315-"}, ["B", "A"]),
        ({"StudyTime": "0800-0859"}, ["A"]),
        ({"StudyTime": "14-"}, ["B"]),
        ({"AccessionNumber": "ACC-A", "StudyDescription": "Chest*"}, ["A"]),
        ({"ModalitiesInStudy": "DX"}, ["A", "C"]),
        ({"ModalitiesInStudy": "MR,DX"}, ["A", "C"]),
        ({"ModalitiesInStudy": "MR"}, []),
    ],
)
def test_study_matching(
    client: TestClient,
    integration_token: str,
    stored: dict[str, str],
    params: dict[str, str],
    expected: list[str],
) -> None:
    assert study_uids(client, integration_token, params, stored) == expected


def test_uid_list_matching(
    client: TestClient, integration_token: str, stored: dict[str, str]
) -> None:
    comma = {"StudyInstanceUID": f"{stored['A']},{stored['D']}"}
    assert study_uids(client, integration_token, comma, stored) == ["A", "D"]
    backslash = {"StudyInstanceUID": f"{stored['B']}\\{stored['C']}"}
    assert study_uids(client, integration_token, backslash, stored) == ["B", "C"]


def test_series_in_a_study(
    client: TestClient, integration_token: str, stored: dict[str, str]
) -> None:
    series = found(client, integration_token, f"/studies/{stored['A']}/series")
    assert values(series, SERIES_UID) == [stored["A_CR"], stored["A_DX"]]
    assert values(series, MODALITY) == ["CR", "DX"]
    assert values(series, SERIES_INSTANCES) == [2, 1]
    assert values(series, STUDY_UID) == [stored["A"], stored["A"]]
    assert values(series, RETRIEVE_URL) == [
        f"http://testserver/dicomweb/studies/{stored['A']}/series/{stored['A_CR']}",
        f"http://testserver/dicomweb/studies/{stored['A']}/series/{stored['A_DX']}",
    ]
    assert PATIENT_ID not in series[0]  # the client already knows the study
    dx = found(client, integration_token, f"/studies/{stored['A']}/series", {"Modality": "DX"})
    assert values(dx, SERIES_UID) == [stored["A_DX"]]


def test_series_in_all_studies_carry_study_attributes(
    client: TestClient, integration_token: str, stored: dict[str, str]
) -> None:
    series = found(client, integration_token, "/series", {"PatientName": "doe^jane"})
    assert values(series, SERIES_UID) == [stored["A_CR"], stored["A_DX"]]
    assert values(series, PATIENT_ID) == ["PID-A", "PID-A"]
    assert values(series, STUDY_INSTANCES) == [3, 3]
    assert values(series, MODALITIES) == ["CR", "CR"]  # first value of ["CR", "DX"]
    dx = found(client, integration_token, "/series", {"Modality": "DX"})
    assert sorted(values(dx, STUDY_UID)) == sorted([stored["A"], stored["C"]])


def test_instances_at_each_route(
    client: TestClient, integration_token: str, stored: dict[str, str]
) -> None:
    a, cr = stored["A"], stored["A_CR"]
    in_series = found(client, integration_token, f"/studies/{a}/series/{cr}/instances")
    assert values(in_series, SOP_UID) == [stored["A_CR_1"], stored["A_CR_2"]]
    assert values(in_series, INSTANCE_NUMBER) == [1, 2]
    first = in_series[0]
    assert first["00280010"] == {"vr": "US", "Value": [64]}
    assert first["00280100"] == {"vr": "US", "Value": [16]}
    assert first["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.1"]
    assert first[RETRIEVE_URL]["Value"] == [
        f"http://testserver/dicomweb/studies/{a}/series/{cr}/instances/{stored['A_CR_1']}"
    ]
    in_study = found(client, integration_token, f"/studies/{a}/instances")
    assert len(in_study) == 3
    assert values(in_study, MODALITY) == ["CR", "CR", "DX"]  # series attributes come along
    one = found(client, integration_token, "/instances", {"SOPInstanceUID": stored["A_CR_2"]})
    assert values(one, SERIES_UID) == [cr]
    assert values(one, STUDY_UID) == [a]
    assert values(one, PATIENT_ID) == ["PID-A"]
    by_name = found(client, integration_token, "/instances", {"PatientName": "DOE*"})
    assert sorted(values(by_name, STUDY_UID)) == sorted([a, a, a, stored["B"]])


def test_unknown_study_or_no_match_is_an_empty_list(
    client: TestClient, integration_token: str, stored: dict[str, str]
) -> None:
    assert found(client, integration_token, f"/studies/{generate_uid()}/series") == []
    assert found(client, integration_token, "/studies", {"PatientID": "nobody"}) == []


def test_includefield(client: TestClient, integration_token: str, stored: dict[str, str]) -> None:
    a = {"PatientID": "PID-A"}
    by_keyword = found(
        client, integration_token, "/studies", {**a, "includefield": "StudyDescription"}
    )
    assert by_keyword[0][STUDY_DESCRIPTION] == {"vr": "LO", "Value": ["Chest PA"]}
    by_tag = found(client, integration_token, "/studies", {**a, "includefield": "00081030"})
    assert by_tag[0][STUDY_DESCRIPTION]["Value"] == ["Chest PA"]
    # Not in the index: read from the stored metadata of the study's first instance.
    stored_only = [("PatientID", "PID-A"), ("includefield", "OperatorsName,ImageComments")]
    study = found(client, integration_token, "/studies", stored_only)[0]
    assert study[OPERATORS_NAME]["Value"] == [{"Alphabetic": "Tech^One"}]
    assert study[IMAGE_COMMENTS] == {"vr": "LT"}  # asked for, not in the files: empty
    instances = found(
        client,
        integration_token,
        f"/studies/{stored['A']}/series/{stored['A_CR']}/instances",
        {"includefield": "OperatorsName"},
    )
    assert values(instances, OPERATORS_NAME) == [{"Alphabetic": "Tech^One"}, None]


def test_includefield_all(
    client: TestClient, integration_token: str, stored: dict[str, str]
) -> None:
    params = [("PatientID", "PID-A"), ("includefield", "all")]
    study = found(client, integration_token, "/studies", params)[0]
    assert study[STUDY_DESCRIPTION]["Value"] == ["Chest PA"]
    assert study["00100040"]["Value"] == ["F"]  # PatientSex
    assert SOP_UID not in study  # instance attributes do not describe a study
    params += [("SOPInstanceUID", stored["A_CR_1"])]
    instance = found(client, integration_token, "/instances", params)[0]
    assert instance[OPERATORS_NAME]["Value"] == [{"Alphabetic": "Tech^One"}]
    assert instance["00280101"]["Value"] == [12]  # BitsStored, from the stored metadata
    assert "7FE00010" not in instance  # never the pixels
    assert instance[SERIES_INSTANCES]["Value"] == [2]


def test_paging_with_limit_and_offset(
    client: TestClient, integration_token: str, stored: dict[str, str]
) -> None:
    first = search(client, integration_token, "/studies", {"limit": "2"})
    assert "warning" not in first.headers  # the client chose the limit
    rest = found(client, integration_token, "/studies", {"limit": "2", "offset": "2"})
    everything = found(client, integration_token, "/studies")
    assert values(first.json() + rest, STUDY_UID) == values(everything, STUDY_UID)
    assert found(client, integration_token, "/studies", {"offset": "4"}) == []
    series = found(client, integration_token, "/series", {"limit": "1", "offset": "2"})
    assert values(series, SERIES_UID) == [stored["A_DX"]]  # B's, then A's CR, then A's DX


def test_server_limits_cut_the_answer_with_a_warning(
    client: TestClient, integration_token: str, stored: dict[str, str], settings: Settings
) -> None:
    settings.qido_default_limit = 3
    settings.qido_max_limit = 3
    for params in ({}, {"limit": "50"}):
        response = search(client, integration_token, "/studies", params)
        assert response.status_code == 200
        assert len(response.json()) == 3
        assert response.headers["warning"] == (
            '299 testserver: "The number of results exceeded the maximum supported by the '
            'server. Additional results can be requested."'
        )
    last = search(client, integration_token, "/studies", {"offset": "3"})
    assert len(last.json()) == 1
    assert "warning" not in last.headers  # nothing more to fetch


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        ("/studies", {"Foo": "1"}, "Foo: unknown attribute"),
        ("/studies", {"ImageComments": "x"}, "ImageComments: matching on this attribute is not"),
        ("/studies", {"0008103": "x"}, "unknown attribute"),
        ("/studies", {"00081115.0020000E": "1.2"}, "inside sequences are not supported"),
        ("/studies", {"StudyDate": "2020-01-01"}, "StudyDate: dates are YYYYMMDD"),
        ("/studies", {"StudyDate": "20201301"}, "StudyDate: dates are YYYYMMDD"),
        ("/studies", {"StudyDate": "-"}, "StudyDate: a range needs at least one end"),
        ("/studies", {"StudyDate": "20201231-20200101"}, "StudyDate: the range ends before"),
        ("/studies", {"StudyTime": "2500"}, "StudyTime: times are HH"),
        ("/studies", {"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID: must be a UID"),
        ("/studies", {"limit": "ten"}, "limit: must be a positive integer"),
        ("/studies", {"limit": "-1"}, "limit: must be a positive integer"),
        ("/studies", {"limit": "0"}, "limit: must be a positive integer"),
        ("/studies", {"offset": "-1"}, "offset: must be a non-negative integer"),
        ("/studies", [("limit", "1"), ("limit", "2")], "limit: given more than once"),
        ("/studies", [("PatientID", "a"), ("00100020", "b")], "PatientID: given more than"),
        ("/studies", {"fuzzymatching": "maybe"}, "fuzzymatching: must be true or false"),
        ("/studies", {"includefield": "NoSuchThing"}, "includefield: unknown attribute"),
        ("/studies", {"Modality": "CR"}, "Modality: a series attribute cannot be matched in a"),
        ("/series", {"SOPInstanceUID": "1.2"}, "SOPInstanceUID: a instance attribute"),
        ("/series", {"SeriesNumber": "one"}, "SeriesNumber: must be an integer"),
        ("/studies", {"ModalitiesInStudy": "C*"}, "ModalitiesInStudy: wildcards are not"),
        ("/studies/1.2.x/series", {}, "the study in the URL is not a valid UID"),
        ("/studies/1.2/series/x/instances", {}, "the series in the URL is not a valid UID"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(
    client: TestClient, integration_token: str, path: str, params: Params, reason: str
) -> None:
    assert reason in refused(client, integration_token, path, params)


def test_refusals_do_not_echo_patient_data(client: TestClient, integration_token: str) -> None:
    detail = refused(client, integration_token, "/studies", {"PatientBirthDate": "Doe^Jane"})
    assert detail.startswith("PatientBirthDate:")
    assert "Doe" not in detail


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/dicom+json", 200),
        ("application/json", 200),
        ("*/*", 200),
        ('multipart/related; type="application/dicom+xml", application/dicom+json;q=0.5', 200),
        ('multipart/related; type="application/dicom+xml"', 406),
        ("application/dicom+json;q=0", 406),
        ("text/html", 406),
    ],
)
def test_accept_header(
    client: TestClient, integration_token: str, accept: str, status: int
) -> None:
    response = search(client, integration_token, "/studies", None, Accept=accept)
    assert response.status_code == status, response.text
    if status == 406:
        assert response.json()["error"] == "NotAcceptable"


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.INTEGRATION, 200), (Role.CLINICIAN, 200), (Role.ADMIN, 200), (Role.AUDITOR, 403)],
)
def test_who_may_search(
    client: TestClient, tokens: dict[Role, str], role: Role, status: int
) -> None:
    assert search(client, tokens[role], "/studies").status_code == status
    assert client.get("/dicomweb/studies").status_code == 401


def test_each_search_is_in_the_access_log_without_query_values(
    client: TestClient,
    integration_token: str,
    stored: dict[str, str],
    runtime: Runtime,
    capfd: pytest.CaptureFixture[str],
) -> None:
    capfd.readouterr()
    found(client, integration_token, f"/studies/{stored['A']}/series", {"Modality": "DX"})
    found(client, integration_token, "/studies", {"PatientName": "Smith^Anna"})
    logs = capfd.readouterr()
    assert "Smith" not in logs.err + logs.out
    with runtime.session_factory() as session:
        rows = session.scalars(
            select(AccessLogEntry)
            .where(AccessLogEntry.action == "dicom.search")
            .order_by(AccessLogEntry.at)
        ).all()
    assert [(r.study_instance_uid, r.result_count, r.status_code) for r in rows] == [
        (stored["A"], 1, 200),
        (None, 1, 200),
    ]
    assert {r.role for r in rows} == {"integration"}


def test_person_name_groups_and_base_url(
    client: TestClient, integration_token: str, settings: Settings
) -> None:
    settings.base_url = "https://pacs.example.org/vigil"
    ds = make_cr(patient_id="PID-JP", patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう")
    ds.SpecificCharacterSet = "ISO_IR 192"
    store(client, integration_token, [ds])
    study = found(client, integration_token, "/studies", {"PatientName": "yamada*"})[0]
    assert study[PATIENT_NAME]["Value"] == [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]
    assert study[RETRIEVE_URL]["Value"] == [
        f"https://pacs.example.org/vigil/dicomweb/studies/{ds.StudyInstanceUID}"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "/dicomweb/studies?PatientName=Doe%00",
        "/dicomweb/series?Modality=%00",
        "/api/v1/access-log?username=a%00b",
        "/review/?modality=%00",
    ],
)
def test_a_nul_in_the_query_string_is_refused_with_the_reason(
    client: TestClient, tokens: dict[Role, str], url: str
) -> None:
    # PostgreSQL cannot hold NUL in text: such a search failed its statement there (a 500).
    response = client.get(url, headers={"Authorization": f"Bearer {tokens[Role.ADMIN]}"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "query parameters must not contain NUL (0x00) characters"
