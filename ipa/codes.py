"""ES10 named numbers as IntEnums: profile states and classes, events, result codes.

Members are the ASN.1 named numbers in UPPER_SNAKE_CASE and carry the exact ASN.1 spelling in
``asn1_name``. A value the schema does not name (a newer card) still converts: it becomes a
pseudo-member whose ``asn1_name`` is ``"unknown(<value>)"``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Self


class Asn1Enum(IntEnum):
    """An IntEnum whose members also know their ASN.1 named-number spelling."""

    asn1_name: str

    def __new__(cls, value: int, asn1_name: str = "") -> Self:
        obj = int.__new__(cls, value)
        obj._value_ = value
        obj.asn1_name = asn1_name
        return obj

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        # A code from a newer standard version: keep it usable instead of failing the decode.
        obj = int.__new__(cls, value)
        obj._name_ = f"UNKNOWN_{value}"
        obj._value_ = value
        obj.asn1_name = f"unknown({value})"
        return obj

    @property
    def is_known(self) -> bool:
        """Whether the schema names this value."""
        return self._value_ in type(self)._value2member_map_

    @classmethod
    def from_asn1_name(cls, name: str) -> Self:
        """The member whose ASN.1 spelling is ``name``."""
        for member in cls:
            if member.asn1_name == name:
                return member
        raise ValueError(f"{cls.__name__} has no ASN.1 name {name!r}")


class ProfileState(Asn1Enum):
    """ProfileState (SGP.22 ProfileInfo ``9F70``)."""

    DISABLED = 0, "disabled"
    ENABLED = 1, "enabled"


class ProfileClass(Asn1Enum):
    """ProfileClass (``95``)."""

    TEST = 0, "test"
    PROVISIONING = 1, "provisioning"
    OPERATIONAL = 2, "operational"


class IconType(Asn1Enum):
    """IconType (``93``)."""

    JPG = 0, "jpg"
    PNG = 1, "png"


class NotificationEvent(Asn1Enum):
    """Bit positions of the NotificationEvent BIT STRING."""

    NOTIFICATION_INSTALL = 0, "notificationInstall"
    NOTIFICATION_ENABLE = 1, "notificationEnable"
    NOTIFICATION_DISABLE = 2, "notificationDisable"
    NOTIFICATION_DELETE = 3, "notificationDelete"


class ResetOption(Asn1Enum):
    """Bit positions of ``resetOptions`` (SGP.32 v1.2 ``BF64``; SGP.22 ``BF34`` has 0..2)."""

    DELETE_OPERATIONAL_PROFILES = 0, "deleteOperationalProfiles"
    DELETE_FIELD_LOADED_TEST_PROFILES = 1, "deleteFieldLoadedTestProfiles"
    RESET_DEFAULT_SMDP_ADDRESS = 2, "resetDefaultSmdpAddress"
    DELETE_PRE_LOADED_TEST_PROFILES = 3, "deletePreLoadedTestProfiles"
    DELETE_PROVISIONING_PROFILES = 4, "deleteProvisioningProfiles"
    RESET_EIM_CONFIG_DATA = 5, "resetEimConfigData"
    RESET_IMMEDIATE_ENABLE_CONFIG = 6, "resetImmediateEnableConfig"


class IpaMode(Asn1Enum):
    """IpaMode (SGP32-EUICCInfo2 ``90``)."""

    IPAD = 0, "ipad"
    IPAE = 1, "ipae"


class EuiccCategory(Asn1Enum):
    """EUICCInfo2 ``euiccCategory``."""

    OTHER = 0, "other"
    BASIC_EUICC = 1, "basicEuicc"
    MEDIUM_EUICC = 2, "mediumEuicc"
    CONTACTLESS_EUICC = 3, "contactlessEuicc"


class EnableResult(Asn1Enum):
    """EnableProfileResponse ``enableResult``."""

    OK = 0, "ok"
    ICCID_OR_AID_NOT_FOUND = 1, "iccidOrAidNotFound"
    PROFILE_NOT_IN_DISABLED_STATE = 2, "profileNotInDisabledState"
    DISALLOWED_BY_POLICY = 3, "disallowedByPolicy"
    WRONG_PROFILE_REENABLING = 4, "wrongProfileReenabling"
    CAT_BUSY = 5, "catBusy"
    UNDEFINED_ERROR = 127, "undefinedError"


class DisableResult(Asn1Enum):
    """DisableProfileResponse ``disableResult``."""

    OK = 0, "ok"
    ICCID_OR_AID_NOT_FOUND = 1, "iccidOrAidNotFound"
    PROFILE_NOT_IN_ENABLED_STATE = 2, "profileNotInEnabledState"
    DISALLOWED_BY_POLICY = 3, "disallowedByPolicy"
    CAT_BUSY = 5, "catBusy"
    UNDEFINED_ERROR = 127, "undefinedError"


class DeleteResult(Asn1Enum):
    """DeleteProfileResponse ``deleteResult``."""

    OK = 0, "ok"
    ICCID_OR_AID_NOT_FOUND = 1, "iccidOrAidNotFound"
    PROFILE_NOT_IN_DISABLED_STATE = 2, "profileNotInDisabledState"
    DISALLOWED_BY_POLICY = 3, "disallowedByPolicy"
    UNDEFINED_ERROR = 127, "undefinedError"


class SetNicknameResult(Asn1Enum):
    """SetNicknameResponse ``setNicknameResult``."""

    OK = 0, "ok"
    ICCID_NOT_FOUND = 1, "iccidNotFound"
    UNDEFINED_ERROR = 127, "undefinedError"


class SetDefaultDpAddressResult(Asn1Enum):
    """SetDefaultDpAddressResponse ``setDefaultDpAddressResult``."""

    OK = 0, "ok"
    UNDEFINED_ERROR = 127, "undefinedError"


class LoadCrlError(Asn1Enum):
    """LoadCRLResponse ``loadCRLResponseError``."""

    INVALID_SIGNATURE = 1, "invalidSignature"
    INVALID_CRL_FORMAT = 2, "invalidCRLFormat"
    NOT_ENOUGH_MEMORY_SPACE = 3, "notEnoughMemorySpace"
    VERIFICATION_KEY_NOT_FOUND = 4, "verificationKeyNotFound"
    FRESHER_CRL_ALREADY_LOADED = 5, "fresherCrlAlreadyLoaded"
    BASE_CRL_MISSING = 6, "baseCrlMissing"
    UNDEFINED_ERROR = 127, "undefinedError"


class DeleteNotificationStatus(Asn1Enum):
    """NotificationSentResponse ``deleteNotificationStatus``."""

    OK = 0, "ok"
    NOTHING_TO_DELETE = 1, "nothingToDelete"
    UNDEFINED_ERROR = 127, "undefinedError"


class ProfileInfoListError(Asn1Enum):
    """ProfileInfoListError (SGP.32 adds ``profileChangeOngoing``)."""

    INCORRECT_INPUT_VALUES = 1, "incorrectInputValues"
    PROFILE_CHANGE_ONGOING = 11, "profileChangeOngoing"
    UNDEFINED_ERROR = 127, "undefinedError"


class ListNotificationsResultError(Asn1Enum):
    """ListNotificationResponse ``listNotificationsResultError``."""

    UNDEFINED_ERROR = 127, "undefinedError"


class NotificationsListResultError(Asn1Enum):
    """RetrieveNotificationsListResponse ``notificationsListResultError``."""

    UNDEFINED_ERROR = 127, "undefinedError"


class GetCertsError(Asn1Enum):
    """GetCertsResponse ``getCertsError`` (the standard spells it ``undfinedError``)."""

    INVALID_CI_PK_ID = 1, "invalidCiPKId"
    UNDFINED_ERROR = 127, "undfinedError"


class ResetResult(Asn1Enum):
    """eUICCMemoryReset ``resetResult`` (SGP.32 v1.2 adds ``ecallActive``)."""

    OK = 0, "ok"
    NOTHING_TO_DELETE = 1, "nothingToDelete"
    CAT_BUSY = 5, "catBusy"
    ECALL_ACTIVE = 104, "ecallActive"
    UNDEFINED_ERROR = 127, "undefinedError"


class ResetEimResult(Asn1Enum):
    """SGP32-EuiccMemoryResetResponse ``resetEimResult``."""

    OK = 0, "ok"
    NOTHING_TO_DELETE = 1, "nothingToDelete"
    EIM_RESET_NOT_SUPPORTED = 2, "eimResetNotSupported"
    UNDEFINED_ERROR = 127, "undefinedError"


class ResetImmediateEnableConfigResult(Asn1Enum):
    """SGP32-EuiccMemoryResetResponse ``resetImmediateEnableConfigResult``."""

    OK = 0, "ok"
    RESET_IEC_NOT_SUPPORTED = 1, "resetIECNotSupported"
    UNDEFINED_ERROR = 127, "undefinedError"
