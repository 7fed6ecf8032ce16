module github.com/kilnci/kiln

go 1.26
