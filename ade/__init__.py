"""ADE: turns messy spreadsheets into clean, normalized workbooks with an audit trail."""

__version__ = "0.1.0"
