"""Synthetic patients and studies: names, IDs, sex, age, dates, view position.

Names come from short lists of common surnames and given names; none belongs to anyone.
IDs embed the run's seed and the image index, so they are unique within a run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

SURNAMES = (
    "ANDERSEN", "BAKER", "CHEN", "DUBOIS", "EVANS", "FISCHER", "GARCIA", "HUGHES", "IBRAHIM",
    "JENSEN", "KOWALSKI", "LOPEZ", "MARTIN", "NGUYEN", "OKAFOR", "PATEL", "QUINN", "ROSSI",
    "SILVA", "TANAKA", "UDDIN", "VARGA", "WALKER", "XU", "YILMAZ", "ZIMMERMANN", "BROWN",
    "COHEN", "DIALLO", "ERIKSSON", "FERREIRA", "GUPTA", "HANSEN", "IVANOV", "JOHANSSON",
    "KIM", "LARSEN", "MULLER", "NOVAK", "OBRIEN",
)  # fmt: skip
GIVEN_F = (
    "ANNA", "BEATRIZ", "CLARA", "DEBORAH", "ELENA", "FATIMA", "GRACE", "HANNA", "INGRID",
    "JULIA", "KATE", "LEILA", "MARIA", "NORA", "OLIVIA", "PRIYA", "ROSA", "SARAH", "TERESA",
    "YUKI",
)  # fmt: skip
GIVEN_M = (
    "AHMED", "BRUNO", "CARLOS", "DAVID", "ERIK", "FRANK", "GEORGE", "HENRY", "IVAN", "JAMES",
    "KENJI", "LUCAS", "MARCO", "NIKOLAI", "OMAR", "PAUL", "RAJ", "SAMUEL", "TOMAS", "WEI",
)  # fmt: skip
FIRST_STUDY_DAY = dt.date(2012, 1, 1)
LAST_STUDY_DAY = dt.date(2024, 12, 31)


@dataclass(frozen=True)
class Patient:
    """One patient and the study their image belongs to (DICOM-formatted strings)."""

    patient_id: str
    name: str  # DICOM PN: FAMILY^GIVEN
    sex: str  # "F" or "M"
    age: int  # whole years at the study date
    birth_date: str  # YYYYMMDD
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    accession: str
    view: str  # "PA" or "AP"


def draw_patient(rng: np.random.Generator, *, seed: int, index: int, ap_fraction: float) -> Patient:
    """Return a random adult patient with a study on a random day (no wall-clock time used)."""
    sex = "F" if rng.random() < 0.5 else "M"
    given = GIVEN_F if sex == "F" else GIVEN_M
    name = f"{SURNAMES[rng.integers(len(SURNAMES))]}^{given[rng.integers(len(given))]}"
    age = int(np.clip(rng.normal(58.0, 17.0), 18, 95))
    span = (LAST_STUDY_DAY - FIRST_STUDY_DAY).days
    study_day = FIRST_STUDY_DAY + dt.timedelta(days=int(rng.integers(span + 1)))
    birth = _birth_date(study_day, age, int(rng.integers(365)))
    seconds = int(rng.integers(7 * 3600, 22 * 3600))
    view = "AP" if rng.random() < ap_fraction else "PA"
    code = f"{seed % 10000:04d}{index:06d}"
    return Patient(
        patient_id=f"PH{code}",
        name=name,
        sex=sex,
        age=age,
        birth_date=birth.strftime("%Y%m%d"),
        study_date=study_day.strftime("%Y%m%d"),
        study_time=f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}",
        accession=f"A{code}",
        view=view,
    )


def _birth_date(study_day: dt.date, age: int, days_before_birthday: int) -> dt.date:
    """Return a birth date that makes the patient exactly ``age`` on ``study_day``."""
    # The last birthday falls 0..364 days before the study; 29 February maps to 28 February.
    last_birthday = study_day - dt.timedelta(days=days_before_birthday)
    try:
        return last_birthday.replace(year=last_birthday.year - age)
    except ValueError:
        return last_birthday.replace(year=last_birthday.year - age, day=28)
