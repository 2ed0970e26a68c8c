"""sfbridge: the bridge between referral data and Salesforce."""

__version__ = "0.1.0"
